//! Property tests: the parsers round-trip what they accept and never panic on anything.

use std::net::IpAddr;

use berth::spec::{
    load_sources, parse_duration, parse_endpoint, parse_image, parse_memory, parse_port, parse_restart, parse_str,
    parse_volume, PortMapping, Protocol,
};
use proptest::prelude::*;

fn mapping() -> impl Strategy<Value = PortMapping> {
    let ip = prop_oneof![
        Just(None),
        any::<[u8; 4]>().prop_map(|b| Some(IpAddr::from(b))),
        any::<[u16; 8]>().prop_map(|s| Some(IpAddr::from(s))),
    ];
    let proto = prop_oneof![Just(Protocol::Tcp), Just(Protocol::Udp)];
    (ip, 1..=u16::MAX, 1..=u16::MAX, proto).prop_map(|(host_ip, host_port, container_port, protocol)| PortMapping {
        host_ip,
        host_port,
        container_port,
        protocol,
    })
}

/// Strings made of the characters these formats are built from, so the parsers get deep.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-zA-Z0-9:/@.%_\\-\\[\\] ]{0,40}"]
}

proptest! {
    #[test]
    fn parse_port_round_trips(m in mapping()) {
        prop_assert_eq!(parse_port(&m.to_string()), Ok(m));
    }

    #[test]
    fn parse_port_round_trips_without_default_protocol(h in 1..=u16::MAX, c in 1..=u16::MAX) {
        let m = parse_port(&format!("{h}:{c}")).unwrap();
        prop_assert_eq!((m.host_ip, m.host_port, m.container_port, m.protocol), (None, h, c, Protocol::Tcp));
    }

    #[test]
    fn scalar_parsers_never_panic(s in fragment()) {
        let _ = parse_port(&s);
        let _ = parse_volume(&s);
        let _ = parse_duration(&s);
        let _ = parse_image(&s);
        let _ = parse_memory(&s);
        let _ = parse_restart(&s);
        let _ = parse_endpoint(&s);
    }

    #[test]
    fn accepted_volumes_round_trip(s in fragment()) {
        if let Ok(v) = parse_volume(&s) {
            prop_assert_eq!(parse_volume(&v.to_string()), Ok(v));
        }
    }

    #[test]
    fn documents_never_panic(s in any::<String>()) {
        let _ = parse_str("x.yaml", &s);
        let _ = parse_str("x.json", &s);
    }

    #[test]
    fn mutated_documents_never_panic(pos in 0usize..400, junk in fragment()) {
        let base = "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {name: shop}\nspec:\n  image: shop:1\n  \
                    roles: {web: {hosts: [host1], ports: [\"8080:80\"], volumes: [\"d:/d\"], \
                    healthcheck: {cmd: x, interval: 5s}}}\n  rollout: {maxUnavailable: 50%}\n";
        let cut = base.char_indices().map(|(i, _)| i).nth(pos % base.len()).unwrap_or(0);
        let text = format!("{}{}{}", &base[..cut], junk, &base[cut..]);
        let _ = load_sources(&[("m.yaml".to_string(), text)]);
    }
}
