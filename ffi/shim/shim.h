/*
 * Small C shim over DPDK 22.11: the static-inline fast-path functions and the
 * thread-local / macro-built values that bindgen cannot see. Every function is a
 * thin forwarder; no logic lives here beyond what DPDK's own inlines do.
 */
#ifndef DIRECTOR_SHIM_H
#define DIRECTOR_SHIM_H

#include <stdint.h>
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>
#include <rte_bus_vdev.h>
#include <rte_version.h>
#include <rte_log.h>
#include <rte_pdump.h>
#include <rte_telemetry.h>

/* Thread-local values. */
int shim_rte_errno(void);
unsigned shim_rte_lcore_id(void);

/* Constants built from macros (RTE_BIT64 etc.). */
uint64_t shim_rss_ip(void);
uint64_t shim_rss_ipv4(void);
uint64_t shim_rss_l3_src_only(void);
uint64_t shim_tx_offload_mbuf_fast_free(void);
unsigned shim_reta_group_size(void);
uint32_t shim_mempool_f_no_iova_contig(void);
uint16_t shim_mbuf_default_buf_size(void);
uint16_t shim_pktmbuf_headroom(void);

/* Cycles. */
uint64_t shim_rdtsc(void);

/* Ethdev bursts. */
uint16_t shim_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t shim_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

/* Mbufs. */
struct rte_mbuf *shim_pktmbuf_alloc(struct rte_mempool *mp);
int shim_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n);
void shim_pktmbuf_free(struct rte_mbuf *m);
void shim_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned n);
uint32_t shim_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t shim_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t shim_pktmbuf_headroom_of(const struct rte_mbuf *m);
uint8_t *shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
uint8_t *shim_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
uint8_t *shim_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int shim_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t shim_mbuf_port(const struct rte_mbuf *m);
void shim_mbuf_set_port(struct rte_mbuf *m, uint16_t port);
uint32_t shim_mbuf_rss_hash(const struct rte_mbuf *m);
int shim_mbuf_has_rss_hash(const struct rte_mbuf *m);

/* Mempool. */
struct rte_mempool *shim_pktmbuf_pool_create(const char *name, unsigned n,
        unsigned cache_size, uint16_t data_room_size, int socket_id, unsigned flags);
unsigned shim_mempool_avail_count(const struct rte_mempool *mp);
unsigned shim_mempool_in_use_count(const struct rte_mempool *mp);

/* Rings. */
unsigned shim_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned shim_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned shim_ring_count(const struct rte_ring *r);

/* Profiling hooks for benchmarks: callgrind client requests (no-ops when valgrind's
 * headers were absent at build time or outside valgrind) and per-thread CPU clocks. */
int shim_running_on_valgrind(void);
void shim_callgrind_start(void);
void shim_callgrind_stop(void);
void shim_callgrind_zero(void);
void shim_callgrind_dump_at(const char *reason);
int shim_thread_cpu_clock(unsigned long thread, int *clock_id);
uint64_t shim_clock_ns(int clock_id);

#endif
