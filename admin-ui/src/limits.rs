//! Login rate limits (governor), shaped so that an attacker cannot lock a real admin out:
//!
//! - per address: any account, so one address cannot try many accounts quickly;
//! - per (account, address): a few wrong passwords from one place slow that place only;
//! - per account, but only for addresses this account has **not** signed in from before
//!   (successful logins in the last 30 days): a distributed guess at one account is slowed,
//!   while the admin's own known address is never blocked by it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

#[derive(Debug, Clone)]
pub struct LimitConfig {
    pub per_address_burst: u32,
    pub per_address_every: Duration,
    pub per_account_address_burst: u32,
    pub per_account_address_every: Duration,
    pub per_account_burst: u32,
    pub per_account_every: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            per_address_burst: 20,
            per_address_every: Duration::from_secs(15),
            per_account_address_burst: 5,
            per_account_address_every: Duration::from_secs(60),
            per_account_burst: 20,
            per_account_every: Duration::from_secs(30),
        }
    }
}

pub struct Limits {
    address: DefaultKeyedRateLimiter<String>,
    account_address: DefaultKeyedRateLimiter<String>,
    account: DefaultKeyedRateLimiter<String>,
    config: LimitConfig,
}

/// A failed attempt remembered in the store, for [`Limits::seed`].
#[derive(Debug, Clone)]
pub struct PastFailure {
    pub ts_ms: i64,
    pub account: String,
    pub address: String,
}

/// How many cells of a GCRA limiter (one cell per `period`, `burst` at most) the attempts at
/// `times` (ascending, all let through) still hold at `now`.
fn cells_in_use(times: &[i64], period_ms: i64, burst: u32, now: i64) -> u32 {
    let period_ms = period_ms.max(1);
    let mut tat = i64::MIN;
    for t in times {
        tat = tat.max(*t) + period_ms;
    }
    if tat <= now {
        return 0;
    }
    let used = (tat - now + period_ms - 1) / period_ms;
    used.clamp(0, i64::from(burst)) as u32
}

fn quota(burst: u32, every: Duration) -> Quota {
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(every.max(Duration::from_millis(1))).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN)).allow_burst(burst)
}

/// IPv6 clients are limited per /64 (one host usually holds a whole /64).
pub fn address_key(addr: &str) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_default(),
        _ => addr.to_string(),
    }
}

/// Which limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Address,
    AccountAddress,
    Account,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Address => "address",
            Refused::AccountAddress => "account+address",
            Refused::Account => "account (unknown address)",
        }
    }
}

impl Limits {
    pub fn new(c: &LimitConfig) -> Limits {
        Limits {
            address: RateLimiter::keyed(quota(c.per_address_burst, c.per_address_every)),
            account_address: RateLimiter::keyed(quota(c.per_account_address_burst, c.per_account_address_every)),
            account: RateLimiter::keyed(quota(c.per_account_burst, c.per_account_every)),
            config: c.clone(),
        }
    }

    /// How far back [`Limits::seed`] needs failures: the longest any limit takes to refill.
    pub fn memory(&self) -> std::time::Duration {
        let c = &self.config;
        [
            c.per_address_every * c.per_address_burst,
            c.per_account_address_every * c.per_account_address_burst,
            c.per_account_every * c.per_account_burst,
        ]
        .into_iter()
        .max()
        .unwrap_or_default()
    }

    /// Take from fresh limiters what recent failures (remembered in the store) would still
    /// hold, so a restart does not hand out a fresh budget. Every failure counts against the
    /// per-account limit (whether its address was known is not replayed; that limit is
    /// skipped for known addresses anyway). Successful sign-ins are not replayed.
    pub fn seed(&self, failures: &[PastFailure], now_ms: i64) {
        use std::collections::HashMap;
        let c = &self.config;
        let mut by_address: HashMap<String, Vec<i64>> = HashMap::new();
        let mut by_account_address: HashMap<String, Vec<i64>> = HashMap::new();
        let mut by_account: HashMap<String, Vec<i64>> = HashMap::new();
        for f in failures {
            let a = address_key(&f.address);
            let account = f.account.to_lowercase();
            by_account_address.entry(format!("{account}\0{a}")).or_default().push(f.ts_ms);
            by_address.entry(a).or_default().push(f.ts_ms);
            by_account.entry(account).or_default().push(f.ts_ms);
        }
        let fill = |limiter: &DefaultKeyedRateLimiter<String>, keys: HashMap<String, Vec<i64>>, every: std::time::Duration, burst: u32| {
            for (key, mut times) in keys {
                times.sort_unstable();
                let used = cells_in_use(&times, every.as_millis() as i64, burst, now_ms);
                for _ in 0..used {
                    let _ = limiter.check_key(&key);
                }
            }
        };
        fill(&self.address, by_address, c.per_address_every, c.per_address_burst);
        fill(&self.account_address, by_account_address, c.per_account_address_every, c.per_account_address_burst);
        fill(&self.account, by_account, c.per_account_every, c.per_account_burst);
    }

    /// Take one attempt from the limits that apply; `known_address`: the account has signed
    /// in from this address before.
    pub fn check(&self, account: &str, address: &str, known_address: bool) -> Result<(), Refused> {
        let a = address_key(address);
        let account = account.to_lowercase();
        if self.address.check_key(&a).is_err() {
            return Err(Refused::Address);
        }
        if self.account_address.check_key(&format!("{account}\0{a}")).is_err() {
            return Err(Refused::AccountAddress);
        }
        if !known_address && self.account.check_key(&account).is_err() {
            return Err(Refused::Account);
        }
        self.housekeeping();
        Ok(())
    }

    /// Keyed limiters keep one entry per key: drop the ones back at full burst now and then.
    fn housekeeping(&self) {
        for l in [&self.address, &self.account_address, &self.account] {
            if l.len() > 10_000 {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_does_not_lock_out_another() {
        let l = Limits::new(&LimitConfig::default());
        let mut refused = 0;
        for _ in 0..6 {
            if l.check("admin", "10.0.0.66", false).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 1, "the sixth attempt from the attacker's address is refused");
        assert_eq!(l.check("admin", "10.0.0.66", false), Err(Refused::AccountAddress));
        assert_eq!(l.check("admin", "10.0.0.1", true), Ok(()));
    }

    #[test]
    fn distributed_guessing_is_slowed_but_known_addresses_pass() {
        let l = Limits::new(&LimitConfig::default());
        for i in 0..20 {
            assert!(l.check("admin", &format!("10.1.0.{i}"), false).is_ok());
        }
        assert_eq!(l.check("admin", "10.1.1.1", false), Err(Refused::Account));
        assert_eq!(l.check("admin", "10.0.0.1", true), Ok(()));
    }

    #[test]
    fn cells_refill_one_per_period() {
        // Five attempts at once: five cells, one coming back per minute.
        let five = [0, 0, 0, 0, 0];
        assert_eq!(cells_in_use(&five, 60_000, 5, 0), 5);
        assert_eq!(cells_in_use(&five, 60_000, 5, 1), 5);
        assert_eq!(cells_in_use(&five, 60_000, 5, 60_000), 4);
        assert_eq!(cells_in_use(&five, 60_000, 5, 299_999), 1);
        assert_eq!(cells_in_use(&five, 60_000, 5, 300_000), 0);
        // Spread out: earlier ones have refilled.
        assert_eq!(cells_in_use(&[0, 120_000, 240_000], 60_000, 5, 240_000), 1);
        assert_eq!(cells_in_use(&[], 60_000, 5, 0), 0);
    }

    #[test]
    fn seeded_limits_remember_failures() {
        let l = Limits::new(&LimitConfig::default());
        let now = 1_000_000;
        let failures: Vec<PastFailure> =
            (0..5).map(|i| PastFailure { ts_ms: now - 10_000 + i, account: "Admin".into(), address: "10.0.0.66".into() }).collect();
        l.seed(&failures, now);
        assert_eq!(l.check("admin", "10.0.0.66", false), Err(Refused::AccountAddress), "no fresh budget after a restart");
        assert_eq!(l.check("admin", "10.0.0.1", true), Ok(()), "the admin's own address still passes");
        // Failures long enough ago have refilled.
        let l = Limits::new(&LimitConfig::default());
        let old: Vec<PastFailure> =
            (0..5).map(|i| PastFailure { ts_ms: now - 400_000 + i, account: "admin".into(), address: "10.0.0.66".into() }).collect();
        l.seed(&old, now);
        assert_eq!(l.check("admin", "10.0.0.66", false), Ok(()));
        assert_eq!(l.memory(), std::time::Duration::from_secs(600));
    }

    #[test]
    fn ipv6_by_prefix() {
        assert_eq!(address_key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(address_key("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(address_key("10.0.0.1"), "10.0.0.1");
    }
}
