//! The address pool a Host's app networks take their subnets from (`spec.network`).
//!
//! Docker's own default pools hold about 30 bridge networks per daemon; berth gives every app and
//! namespace a network of its own on each host, so it picks each subnet itself, from a pool the Host
//! may set. The choice is a pure function of the pool and the subnets already used on the host, so
//! it is tested on plain data; the docker module lists the host's networks and creates with it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use super::types::{App, Host, HostNetwork, HostSpec};

/// Outside Docker's default pools (172.17.0.0/16, 172.18–31.0.0/16, 192.168.0.0/16 in /20s), so
/// berth's networks and Docker's own never contend. Like any private range it may collide with a
/// network a site already uses: a Host then sets `spec.network.pool`.
pub const DEFAULT_POOL: &str = "10.240.0.0/12";

/// A /26 each: 62 addresses per app and namespace on a host, and 16,384 networks in the default /12.
pub const DEFAULT_SIZE: u8 = 26;

/// The smallest network worth making: a /29 holds the gateway and five containers.
const MAX_SIZE: u8 = 29;

/// `apply` warns once this share of a pool's subnets would be used by the apps placed on the host.
const NEARLY_FULL_PERCENT: u64 = 90;

/// An IPv4 network in canonical form (no host bits set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// The network of `addr/prefix` with host bits cleared (Docker reports canonical subnets anyway).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        (prefix <= 32).then(|| Subnet { base: u32::from(addr) & mask(prefix), prefix })
    }

    /// Parses `a.b.c.d/n`; an IPv6 or malformed subnet is `None` (callers skip what is not IPv4).
    pub fn parse(text: &str) -> Option<Subnet> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let prefix: u8 = prefix.parse().ok()?;
        Subnet::new(addr.parse().ok()?, prefix)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The first address, as a number (u64 so the end of 255.255.255.255/32 does not overflow).
    fn first(&self) -> u64 {
        u64::from(self.base)
    }

    /// One past the last address.
    fn end(&self) -> u64 {
        self.first() + (1u64 << (32 - self.prefix))
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.first() < other.end() && other.first() < self.end()
    }

    /// The gateway Docker would pick: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// A Host's validated `spec.network`: where its app networks' subnets come from, and their size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub pool: Subnet,
    /// Prefix length of every network taken from the pool.
    pub size: u8,
}

/// No subnet of the pool's size is free on the host: the message names the pool and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address pool {pool} is exhausted: no free /{size} left (it holds {capacity}); set a larger spec.network.pool or a smaller spec.network.size on this Host")]
pub struct PoolExhausted {
    pub pool: Subnet,
    pub size: u8,
    pub capacity: u64,
}

impl Default for AddressPool {
    fn default() -> Self {
        AddressPool { pool: Subnet::parse(DEFAULT_POOL).expect("default pool"), size: DEFAULT_SIZE }
    }
}

impl AddressPool {
    /// Parses and checks a Host's `spec.network` (absent fields take the defaults); the error is a
    /// `(field path, message)` pair.
    pub fn of_host(spec: &HostSpec) -> Result<AddressPool, (String, String)> {
        match &spec.network {
            None => Ok(AddressPool::default()),
            Some(n) => AddressPool::parse(n),
        }
    }

    fn parse(n: &HostNetwork) -> Result<AddressPool, (String, String)> {
        let pool_path = || "spec.network.pool".to_string();
        let pool = match &n.pool {
            None => AddressPool::default().pool,
            Some(text) => parse_pool(text).map_err(|m| (pool_path(), m))?,
        };
        let size = n.size.unwrap_or(DEFAULT_SIZE);
        if size < pool.prefix || size > MAX_SIZE {
            let msg = format!("size /{size} must be between the pool's /{} and /{MAX_SIZE}", pool.prefix);
            return Err(("spec.network.size".to_string(), msg));
        }
        Ok(AddressPool { pool, size })
    }

    /// How many networks of `size` the pool holds.
    pub fn capacity(&self) -> u64 {
        1u64 << (self.size - self.pool.prefix)
    }

    /// The first subnet of the pool's size that overlaps none of `used` (every IPv4 subnet of every
    /// network on the host, berth's or anyone's). First-fit keeps the choice predictable and fills
    /// holes left by removed networks. Linear in `used`, whatever the pool's size.
    pub fn choose(&self, used: &[Subnet]) -> Result<Subnet, PoolExhausted> {
        let step = 1u64 << (32 - self.size);
        let mut taken: Vec<&Subnet> = used.iter().filter(|u| u.overlaps(&self.pool)).collect();
        taken.sort_by_key(|u| u.first());
        let mut candidate = self.pool.first();
        for u in taken {
            if u.end() <= candidate {
                continue;
            }
            if u.first() >= candidate + step {
                break;
            }
            // Overlap: the next candidate is the first aligned block after this subnet.
            candidate = u.end().div_ceil(step) * step;
        }
        if candidate + step > self.pool.end() {
            return Err(PoolExhausted { pool: self.pool, size: self.size, capacity: self.capacity() });
        }
        Ok(Subnet { base: candidate as u32, prefix: self.size })
    }
}

/// A pool: IPv4 CIDR, canonical, not loopback, multicast or "this network".
fn parse_pool(text: &str) -> Result<Subnet, String> {
    let bad = || format!("bad pool {text:?}: expected an IPv4 CIDR such as {DEFAULT_POOL}");
    let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p)).ok_or_else(bad)?;
    let net = Subnet::new(addr, prefix).ok_or_else(bad)?;
    if u32::from(addr) != net.base {
        return Err(format!("pool {text:?} has host bits set: did you mean {net}?"));
    }
    for reserved in ["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3"] {
        let r = Subnet::parse(reserved).expect("reserved range");
        if net.overlaps(&r) {
            return Err(format!("pool {net} overlaps the reserved range {r}"));
        }
    }
    Ok(net)
}

/// One `apply` warning per Host whose pool would be at least 90 % used by the app-namespaces placed
/// on it (each takes one network there). Networks that others made on the host are not counted:
/// only the daemon knows them.
pub fn pool_warnings(hosts: &[Host], apps: &[App]) -> Vec<String> {
    let mut placed: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for app in apps {
        let key = (app.metadata.name.as_str(), app.namespace());
        let roles = app.spec.roles.values().flat_map(|r| &r.hosts);
        for host in roles.chain(app.spec.accessories.values().flat_map(|a| &a.hosts)) {
            placed.entry(host.as_str()).or_default().insert(key);
        }
    }
    let mut out = Vec::new();
    for host in hosts {
        let Ok(pool) = AddressPool::of_host(&host.spec) else {
            continue;
        };
        let used = placed.get(host.metadata.name.as_str()).map_or(0, |s| s.len() as u64);
        if let Some(w) = nearly_full(&pool, used) {
            out.push(format!("host/{}: {w}", host.metadata.name));
        }
    }
    out
}

/// The warning for a pool that `used` networks would fill to 90 % or more.
pub fn nearly_full(pool: &AddressPool, used: u64) -> Option<String> {
    let capacity = pool.capacity();
    if used * 100 < capacity * NEARLY_FULL_PERCENT {
        return None;
    }
    let what = format!("address pool {} holds {capacity} networks of /{}", pool.pool, pool.size);
    if used > capacity {
        Some(format!("{what}, but {used} app-namespaces are placed on it: the rest will not start; set a larger spec.network.pool"))
    } else {
        Some(format!("{what} and {used} app-namespaces are placed on it ({}% full)", used * 100 / capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Subnet {
        Subnet::parse(s).unwrap()
    }

    fn pool(p: &str, size: u8) -> AddressPool {
        AddressPool::parse(&HostNetwork { pool: Some(p.into()), size: Some(size) }).unwrap()
    }

    #[test]
    fn first_free_subnet_skips_every_used_one() {
        let p = pool("10.240.0.0/12", 26);
        assert_eq!(p.choose(&[]).unwrap().to_string(), "10.240.0.0/26");
        let used = [net("10.240.0.0/26"), net("10.240.0.64/26"), net("172.17.0.0/16")];
        assert_eq!(p.choose(&used).unwrap().to_string(), "10.240.0.128/26");
        // A foreign /24 in the pool covers four candidates; a hole before it is used first.
        let used = [net("10.240.0.64/26"), net("10.240.0.0/24")];
        assert_eq!(p.choose(&used).unwrap().to_string(), "10.240.1.0/26");
        let used = [net("10.240.0.64/26")];
        assert_eq!(p.choose(&used).unwrap().to_string(), "10.240.0.0/26");
        // A larger network around the whole pool leaves nothing.
        assert!(p.choose(&[net("10.0.0.0/8")]).is_err());
        // A small foreign subnet inside a candidate block blocks that block only.
        assert_eq!(p.choose(&[net("10.240.0.8/29")]).unwrap().to_string(), "10.240.0.64/26");
    }

    #[test]
    fn small_pool_holds_two_then_names_itself() {
        let p = pool("10.99.0.0/27", 28);
        assert_eq!(p.capacity(), 2);
        let a = p.choose(&[]).unwrap();
        let b = p.choose(&[a]).unwrap();
        assert_eq!((a.to_string(), b.to_string()), ("10.99.0.0/28".into(), "10.99.0.16/28".into()));
        let e = p.choose(&[a, b]).unwrap_err().to_string();
        assert!(e.starts_with("address pool 10.99.0.0/27 is exhausted: no free /28 left (it holds 2)"), "{e}");
        assert_eq!(e.lines().count(), 1);
        // A removed network's subnet is free again.
        assert_eq!(p.choose(&[b]).unwrap(), a);
    }

    #[test]
    fn top_of_the_address_space_does_not_overflow() {
        // Not a pool a Host may set (reserved), but the arithmetic must hold up to the last address.
        let p = AddressPool { pool: net("255.255.255.0/24"), size: 29 };
        let all: Vec<Subnet> = (0..32).map(|i| Subnet::new(Ipv4Addr::new(255, 255, 255, i * 8), 29).unwrap()).collect();
        assert_eq!(p.choose(&all[..31]).unwrap().to_string(), "255.255.255.248/29");
        assert!(p.choose(&all).is_err());
    }

    #[test]
    fn host_spec_checks() {
        let check = |pool: Option<&str>, size: Option<u8>| {
            AddressPool::parse(&HostNetwork { pool: pool.map(Into::into), size }).map(|p| (p.pool.to_string(), p.size))
        };
        assert_eq!(check(None, None).unwrap(), (DEFAULT_POOL.to_string(), DEFAULT_SIZE));
        assert_eq!(check(Some("10.99.0.0/27"), Some(28)).unwrap(), ("10.99.0.0/27".into(), 28));
        let err = |pool, size| check(pool, size).unwrap_err();
        assert_eq!(
            err(Some("10.99.0.1/27"), Some(28)).1,
            "pool \"10.99.0.1/27\" has host bits set: did you mean 10.99.0.0/27?"
        );
        assert_eq!(err(Some("10.99.0.0/27"), Some(26)).0, "spec.network.size");
        assert_eq!(err(Some("10.99.0.0/27"), Some(30)).0, "spec.network.size");
        for bad in
            ["10.99.0.0", "fd00::/8", "10.99.0.0/33", "10.99.0.0/x", "10.999.0.0/16", "127.0.0.0/16", "0.0.0.0/0"]
        {
            assert_eq!(err(Some(bad), Some(29)).0, "spec.network.pool", "{bad}");
        }
        // The default pool stays clear of Docker's own default pools and of the test bed's bridge.
        let default = AddressPool::default().pool;
        for docker in
            ["172.17.0.0/16", "172.18.0.0/15", "172.20.0.0/14", "172.24.0.0/13", "192.168.0.0/16", "10.213.0.0/24"]
        {
            assert!(!default.overlaps(&net(docker)), "{docker}");
        }
        assert_eq!(AddressPool::default().capacity(), 16_384);
    }

    #[test]
    fn nearly_full_counts() {
        let p = pool("10.99.0.0/24", 28); // 16 networks
        assert_eq!(nearly_full(&p, 14), None);
        assert!(nearly_full(&p, 15).unwrap().contains("(93% full)"));
        assert!(nearly_full(&p, 17).unwrap().contains("17 app-namespaces"));
    }

    fn subnet() -> impl Strategy<Value = Subnet> {
        (0u32..1024, 20u8..=30)
            .prop_map(|(i, prefix)| Subnet::new(Ipv4Addr::from(0x0a63_0000 + i * 8), prefix).unwrap())
    }

    proptest! {
        /// The choice lies in the pool, has the pool's size, overlaps nothing used, and no earlier
        /// block of the pool was free (first fit).
        #[test]
        fn choice_is_free_aligned_and_first(used in proptest::collection::vec(subnet(), 0..40), size in 24u8..=29) {
            let p = pool("10.99.0.0/22", size);
            let step = 1u64 << (32 - size);
            let free = |s: &Subnet| !used.iter().any(|u| u.overlaps(s));
            let blocks: Vec<Subnet> = (0..p.capacity())
                .map(|k| Subnet { base: (p.pool.first() + k * step) as u32, prefix: size })
                .collect();
            match p.choose(&used) {
                Ok(s) => {
                    prop_assert_eq!(s.prefix(), size);
                    prop_assert!(p.pool.overlaps(&s) && s.first() >= p.pool.first() && s.end() <= p.pool.end());
                    prop_assert!(free(&s));
                    prop_assert_eq!(blocks.iter().find(|b| free(b)), Some(&s));
                }
                Err(_) => prop_assert!(!blocks.iter().any(free)),
            }
        }
    }
}
