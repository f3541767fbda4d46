//! CPU helpers for the fast path that need `unsafe` intrinsics: cache prefetch (DPDK's
//! `rte_prefetch0`), a SIMD tag match for the connection index, and memory advice for large
//! tables. None of them touches DPDK state; they live here because this module and `ffi` are
//! the only places allowed to use `unsafe`.

/// Prefetches the cache line holding `p` into all cache levels. Never faults: a prefetch of
/// any address, valid or not, has no architectural effect.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint; it never faults or changes memory, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Bit `j` set iff `tags[j] == tag` (8 lanes).
#[inline(always)]
pub fn match_u16x8(tags: &[u16; 8], tag: u16) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline; the unaligned load reads exactly the 16
        // bytes of `tags`, which the reference keeps valid.
        unsafe {
            let v = _mm_loadu_si128(tags.as_ptr().cast());
            let eq = _mm_cmpeq_epi16(v, _mm_set1_epi16(tag as i16));
            _mm_movemask_epi8(_mm_packs_epi16(eq, _mm_setzero_si128())) as u32
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = 0;
        for (j, &t) in tags.iter().enumerate() {
            m |= u32::from(t == tag) << j;
        }
        m
    }
}

/// Asks the kernel to back `[p, p + len)` with transparent huge pages (`MADV_HUGEPAGE`) where
/// it covers whole 2 MiB pages. Call before the memory is first written. Best effort: returns
/// false when the kernel refuses (THP disabled); the memory works either way.
pub fn advise_hugepages(p: *const u8, len: usize) -> bool {
    const HUGE: usize = 2 << 20;
    let start = (p as usize).next_multiple_of(HUGE);
    let end = (p as usize).saturating_add(len) & !(HUGE - 1);
    if end <= start {
        return false;
    }
    // SAFETY: madvise only changes how the kernel backs pages of this process's own mapping
    // [start, end), which lies inside the caller's allocation; it never invalidates contents
    // (MADV_HUGEPAGE is advisory).
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_match_agrees_with_a_loop() {
        let tags = [1u16, 0x8000, 0xFFFF, 0x7FFF, 0x0001, 0x0100, 0x8001, 0];
        for probe in [0u16, 1, 0x8000, 0xFFFF, 0x7FFF, 0x0100, 0x8001, 0x1234, 2] {
            let want: u32 = tags.iter().enumerate().filter(|(_, &t)| t == probe).map(|(j, _)| 1 << j).sum();
            assert_eq!(match_u16x8(&tags, probe), want, "probe {probe:#x}");
        }
    }

    #[test]
    fn hugepage_advice_is_harmless() {
        let mut v: Vec<u64> = Vec::with_capacity(3 << 18);
        let _ = advise_hugepages(v.as_ptr().cast(), v.capacity() * 8);
        v.resize(3 << 18, 7);
        prefetch(v.as_ptr());
        prefetch(core::ptr::null::<u8>());
        assert!(v.iter().all(|&x| x == 7));
    }
}
