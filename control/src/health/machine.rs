//! keepalived's per-checker state machines, ported step for step and kept free of I/O and
//! clocks: the engine feeds each probe outcome in and gets back when to probe next and
//! whether the checker changed state.
//!
//! - TCP_CHECK: `tcp_epilog` (check_tcp.c).
//! - HTTP_GET / SSL_GET: `epilog` / `timeout_epilog` (check_http.c): one URL per round, a
//!   failing URL retried `retry` times `delay_before_retry` apart, then the checker is down
//!   and only that URL is probed (every max(delay_before_retry, delay_loop)); once it
//!   passes, every URL must pass again, one per `delay_loop` (or at once with
//!   `fast_recovery`) before the checker is up.
//! - MISC_CHECK: `misc_check_child_thread` (check_misc.c): exit 0 passes, `misc_dynamic`
//!   exit 2..255 passes with weight status - 2, anything else (or a timeout) fails; the next
//!   run is measured from the start of the previous one.
//!
//! Invariants (keepalived's `validate_check_config` for a fresh start): a machine starts with
//! `is_up` = not alpha, `has_run` = false and `retry_it` = retry, so the very first failure
//! is decisive; afterwards an up checker goes down only after 1 + retry consecutive
//! failures and a down checker comes back after one success (HTTP: once every URL passed).

use super::spec::{CheckKind, Timing};

/// What the engine must do after an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Wait this long before the next probe.
    pub delay_us: u64,
    /// Measure `delay_us` from the start of the probe just finished (MISC_CHECK) rather than
    /// from its end.
    pub from_start: bool,
    /// The checker's new state, if it changed.
    pub transition: Option<bool>,
    /// MISC_CHECK `misc_dynamic`: the weight changed to this (`None`: configured weight).
    pub weight: Option<Option<u32>>,
    /// A failure that did not (yet) change the state: a retry follows.
    pub retrying: bool,
}

/// A script's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptEnd {
    /// It exited with this status.
    Exited(i32),
    /// It was killed by a signal it was not sent by us, or it timed out and was killed.
    Killed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Tcp,
    Http {
        urls: usize,
        url_it: Option<usize>,
        failed_url: Option<usize>,
        fast_recovery: bool,
    },
    Misc {
        dynamic: bool,
        last_exit: i32,
        weight: Option<u32>,
    },
}

/// One checker's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    is_up: bool,
    has_run: bool,
    retry_it: u32,
    kind: Kind,
}

enum Method {
    New,
    Retry,
    Failed,
}

impl Machine {
    /// A fresh machine for a checker of `kind` whose state is `up` (false under alpha).
    pub fn new(kind: &CheckKind, timing: &Timing, up: bool) -> Self {
        let kind = match kind {
            CheckKind::Tcp => Kind::Tcp,
            CheckKind::Http(h) | CheckKind::Https(h) => Kind::Http {
                urls: h.urls.len().max(1),
                url_it: Some(0),
                failed_url: None,
                fast_recovery: h.fast_recovery,
            },
            CheckKind::Misc(m) => Kind::Misc {
                dynamic: m.dynamic,
                last_exit: 0,
                weight: None,
            },
        };
        Machine {
            is_up: up,
            has_run: false,
            retry_it: timing.retry,
            kind,
        }
    }

    /// keepalived's is_up.
    pub fn is_up(&self) -> bool {
        self.is_up
    }

    /// Consecutive failed attempts counted toward the retry limit.
    pub fn retries(&self) -> u32 {
        if self.has_run {
            self.retry_it
        } else {
            0
        }
    }

    /// The URL the next HTTP probe must fetch (index into the checker's urls).
    pub fn url(&self) -> usize {
        match self.kind {
            Kind::Http { url_it, .. } => url_it.unwrap_or(0),
            _ => 0,
        }
    }

    /// The weight a `misc_dynamic` script set (None: configured).
    pub fn dynamic_weight(&self) -> Option<u32> {
        match self.kind {
            Kind::Misc { weight, .. } => weight,
            _ => None,
        }
    }

    fn set_up(&mut self, up: bool) -> Option<bool> {
        let changed = self.is_up != up;
        self.is_up = up;
        changed.then_some(up)
    }

    /// TCP_CHECK, HTTP_GET, SSL_GET: a probe passed (`ok`) or failed.
    pub fn probe_done(&mut self, ok: bool, t: &Timing) -> Step {
        match self.kind {
            Kind::Tcp => self.tcp(ok, t),
            Kind::Http { .. } => self.http(ok, t),
            Kind::Misc { .. } => self.script_done(
                if ok {
                    ScriptEnd::Exited(0)
                } else {
                    ScriptEnd::Exited(1)
                },
                t,
            ),
        }
    }

    fn tcp(&mut self, ok: bool, t: &Timing) -> Step {
        let mut step = Step {
            delay_us: t.delay_loop_us,
            from_start: false,
            transition: None,
            weight: None,
            retrying: false,
        };
        if ok || ((self.is_up || !self.has_run) && self.retry_it >= t.retry) {
            self.retry_it = 0;
            if ok && (!self.is_up || !self.has_run) {
                step.transition = self.set_up(true);
            } else if !ok && (self.is_up || !self.has_run) {
                step.transition = self.set_up(false);
            }
        } else if self.is_up {
            step.delay_us = t.delay_before_retry_us;
            self.retry_it += 1;
            step.retrying = true;
        }
        self.has_run = true;
        step
    }

    fn http(&mut self, ok: bool, t: &Timing) -> Step {
        let method = if ok {
            Method::New
        } else if self.is_up || !self.has_run {
            // timeout_epilog marks the checker as run before retrying.
            self.has_run = true;
            Method::Retry
        } else {
            Method::Failed
        };
        let Kind::Http {
            urls,
            mut url_it,
            mut failed_url,
            fast_recovery,
        } = self.kind
        else {
            unreachable!("http() on a non-HTTP machine")
        };
        let mut step = Step {
            delay_us: 0,
            from_start: false,
            transition: None,
            weight: None,
            retrying: false,
        };
        match method {
            Method::New => {
                url_it = url_it.map(|i| i + 1).filter(|&i| i < urls);
                self.retry_it = 0;
            }
            Method::Retry => self.retry_it += 1,
            Method::Failed => {}
        }
        let new = matches!(method, Method::New);
        let retry = matches!(method, Method::Retry);
        if new && url_it.is_none() && failed_url.is_none() {
            if !self.is_up || !self.has_run {
                step.transition = self.set_up(true);
                self.has_run = true;
            }
            url_it = Some(0);
            self.retry_it = 0;
        } else if retry && self.retry_it > t.retry {
            if self.is_up || !self.has_run {
                step.transition = self.set_up(false);
            }
            failed_url = url_it;
        } else if new && failed_url.is_some() {
            failed_url = None;
            url_it = Some(0);
            self.retry_it = 0;
        } else if retry {
            step.retrying = true;
        }
        step.delay_us = if new {
            if !self.has_run {
                self.retry_it = t.retry;
            }
            t.delay_loop_us
        } else if failed_url.is_some() {
            t.delay_before_retry_us.max(t.delay_loop_us)
        } else {
            t.delay_before_retry_us
        };
        if fast_recovery && (!self.has_run || (!self.is_up && failed_url.is_none())) {
            step.delay_us = 0;
        }
        self.kind = Kind::Http {
            urls,
            url_it,
            failed_url,
            fast_recovery,
        };
        step
    }

    /// MISC_CHECK: the script ended.
    pub fn script_done(&mut self, end: ScriptEnd, t: &Timing) -> Step {
        let Kind::Misc {
            dynamic,
            mut last_exit,
            mut weight,
        } = self.kind
        else {
            let ok = matches!(end, ScriptEnd::Exited(0));
            return self.probe_done(ok, t);
        };
        let mut step = Step {
            delay_us: 0,
            from_start: true,
            transition: None,
            weight: None,
            retrying: false,
        };
        let passed = match end {
            ScriptEnd::Exited(s) => s == 0 || (dynamic && (2..=255).contains(&s)),
            ScriptEnd::Killed => false,
        };
        if passed {
            let ScriptEnd::Exited(s) = end else {
                unreachable!()
            };
            if s != last_exit {
                let w = (s != 0).then(|| (s - 2) as u32);
                if w != weight {
                    step.weight = Some(w);
                }
                weight = w;
                last_exit = s;
            }
            if !self.is_up || !self.has_run {
                step.transition = self.set_up(true);
            }
            self.retry_it = 0;
        } else if self.is_up || !self.has_run {
            if self.retry_it < t.retry {
                self.retry_it += 1;
                step.retrying = true;
            } else {
                self.retry_it = 0;
                if weight.is_some() {
                    step.weight = Some(None);
                }
                weight = None;
                if let ScriptEnd::Exited(s) = end {
                    last_exit = s;
                }
                step.transition = self.set_up(false);
            }
        } else if let ScriptEnd::Exited(s) = end {
            last_exit = s;
        }
        step.delay_us = if self.retry_it > 0 {
            t.delay_before_retry_us
        } else {
            t.delay_loop_us
        };
        self.has_run = true;
        self.kind = Kind::Misc {
            dynamic,
            last_exit,
            weight,
        };
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::spec::{HttpCheck, MiscCheck, UrlSpec, SEC};

    fn timing(retry: u32) -> Timing {
        Timing {
            delay_loop_us: 6 * SEC,
            connect_timeout_us: SEC,
            retry,
            delay_before_retry_us: 2 * SEC,
            warmup_us: 0,
            alpha: false,
            log_all_failures: false,
        }
    }

    #[test]
    fn tcp_first_failure_is_decisive_then_retries_apply() {
        let t = timing(2);
        let mut m = Machine::new(&CheckKind::Tcp, &t, true);
        // First check fails: down at once (keepalived sets retry_it = retry at start).
        let s = m.probe_done(false, &t);
        assert_eq!((s.transition, s.delay_us), (Some(false), 6 * SEC));
        // Down: failures keep the delay_loop period.
        assert_eq!(m.probe_done(false, &t).delay_us, 6 * SEC);
        // One success brings it back.
        let s = m.probe_done(true, &t);
        assert_eq!(s.transition, Some(true));
        // Up: 1 + retry consecutive failures take it down, retries delay_before_retry apart.
        let s1 = m.probe_done(false, &t);
        assert_eq!((s1.transition, s1.delay_us, s1.retrying), (None, 2 * SEC, true));
        let s2 = m.probe_done(false, &t);
        assert_eq!((s2.transition, s2.delay_us), (None, 2 * SEC));
        let s3 = m.probe_done(false, &t);
        assert_eq!((s3.transition, s3.delay_us), (Some(false), 6 * SEC));
        // A success between failures resets the count.
        m.probe_done(true, &t);
        m.probe_done(false, &t);
        m.probe_done(true, &t);
        assert_eq!(m.probe_done(false, &t).transition, None);
        assert!(m.is_up());
    }

    #[test]
    fn tcp_alpha_starts_down_and_needs_one_success() {
        let mut t = timing(1);
        t.alpha = true;
        let mut m = Machine::new(&CheckKind::Tcp, &t, false);
        assert_eq!(m.probe_done(false, &t).transition, None);
        assert!(!m.is_up());
        assert_eq!(m.probe_done(true, &t).transition, Some(true));
    }

    fn http(urls: usize, fast: bool) -> CheckKind {
        CheckKind::Http(HttpCheck {
            urls: (0..urls).map(|i| UrlSpec::new(format!("/{i}"))).collect(),
            fast_recovery: fast,
            ..Default::default()
        })
    }

    #[test]
    fn http_retries_then_down_then_full_recheck_before_up() {
        let t = timing(1);
        let mut m = Machine::new(&http(1, false), &t, true);
        assert_eq!(m.probe_done(true, &t).transition, None, "first success while up");
        // Up, failure: retry after delay_before_retry; second failure: down.
        let s = m.probe_done(false, &t);
        assert_eq!((s.transition, s.delay_us), (None, 2 * SEC));
        let s = m.probe_done(false, &t);
        assert_eq!((s.transition, s.delay_us), (Some(false), 6 * SEC));
        // Down: the failed URL is probed every max(dbr, delay_loop).
        assert_eq!(m.probe_done(false, &t).delay_us, 6 * SEC);
        // It passes: every URL is checked again (after delay_loop), then up.
        let s = m.probe_done(true, &t);
        assert_eq!((s.transition, s.delay_us), (None, 6 * SEC));
        assert_eq!(m.probe_done(true, &t).transition, Some(true));
    }

    #[test]
    fn http_urls_one_per_round_and_fast_recovery() {
        let t = timing(0);
        let mut m = Machine::new(&http(2, false), &t, true);
        assert_eq!(m.url(), 0);
        m.probe_done(true, &t);
        assert_eq!(m.url(), 1);
        m.probe_done(true, &t);
        assert_eq!(m.url(), 0);
        // URL 1 fails with retry 0: down at once, and URL 1 is the one probed while down.
        m.probe_done(true, &t);
        let s = m.probe_done(false, &t);
        assert_eq!(s.transition, Some(false));
        assert_eq!(m.url(), 1);
        let mut f = Machine::new(&http(2, true), &t, true);
        f.probe_done(false, &t);
        assert!(!f.is_up());
        let s = f.probe_done(true, &t);
        assert_eq!(s.delay_us, 0, "fast_recovery: the full recheck starts at once");
        assert_eq!(f.probe_done(true, &t).delay_us, 0);
        assert_eq!(f.probe_done(true, &t).transition, Some(true));
    }

    fn misc(dynamic: bool) -> CheckKind {
        CheckKind::Misc(MiscCheck {
            path: "/bin/true".into(),
            timeout_us: SEC,
            dynamic,
        })
    }

    #[test]
    fn misc_exit_codes_and_dynamic_weights() {
        let t = timing(0);
        let mut m = Machine::new(&misc(true), &t, true);
        let s = m.script_done(ScriptEnd::Exited(5), &t);
        assert_eq!((s.transition, s.weight, s.from_start), (None, Some(Some(3)), true));
        assert_eq!(m.script_done(ScriptEnd::Exited(5), &t).weight, None, "unchanged");
        let s = m.script_done(ScriptEnd::Exited(0), &t);
        assert_eq!(s.weight, Some(None), "exit 0: the configured weight");
        m.script_done(ScriptEnd::Exited(12), &t);
        let s = m.script_done(ScriptEnd::Exited(1), &t);
        assert_eq!((s.transition, s.weight), (Some(false), Some(None)));
        let s = m.script_done(ScriptEnd::Killed, &t);
        assert_eq!(s.transition, None, "already down");
        let s = m.script_done(ScriptEnd::Exited(2), &t);
        assert_eq!((s.transition, s.weight), (Some(true), Some(Some(0))));
        // Without misc_dynamic any non-zero status fails.
        let mut p = Machine::new(&misc(false), &t, true);
        assert_eq!(p.script_done(ScriptEnd::Exited(5), &t).transition, Some(false));
        // With retry 1 a single failure while up only retries, delay_before_retry later.
        let t1 = timing(1);
        let mut r = Machine::new(&misc(false), &t1, true);
        r.script_done(ScriptEnd::Exited(0), &t1);
        let s = r.script_done(ScriptEnd::Killed, &t1);
        assert_eq!((s.transition, s.delay_us, s.retrying), (None, 2 * SEC, true));
        assert_eq!(r.script_done(ScriptEnd::Killed, &t1).transition, Some(false));
    }
}
