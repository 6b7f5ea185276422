//! The TLS probe against a real mutual-TLS dockerd: a client certificate from another CA is
//! refused in the server's words (the alert), and the host's own client certificate is not.
mod common;

use berth::docker::tls_probe::refusal;
use common::testbed::Testbed;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn a_rogue_certificate_is_refused_by_name_and_the_right_one_is_not() {
    let tb = Testbed::get();
    let _up = tb.shared();
    let addr = tb.host("host3").tcp.trim_start_matches("tcp://").to_string();
    let rogue = &tb.rogue_tls;
    let why = block_on(refusal(&addr, &rogue.ca, &rogue.cert, &rogue.key));
    let why = why.expect("the rogue certificate was not refused");
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    let good = &tb.client_tls;
    assert_eq!(block_on(refusal(&addr, &good.ca, &good.cert, &good.key)), None);
}
