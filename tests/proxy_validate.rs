//! The proxy sections as a user writes them: what validates, and the exact field and message of
//! what does not (on plain data; no etcd, no Docker).

use berth::spec::{parse_str, validate, validate_against_store, App, Host, Resource};

fn app_in(name: &str, ns: &str, roles: &str) -> App {
    let text = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{image: shop:1, roles: {roles}}}\n"
    );
    match parse_str("app.yaml", &text).unwrap_or_else(|e| panic!("{e}")).remove(0) {
        Resource::App(a) => a,
        other => panic!("{other:?}"),
    }
}

fn problems(text: &str) -> Vec<(String, String)> {
    let docs: Vec<Resource> = match serde_yaml_ng::from_str::<serde_json::Value>(text) {
        Ok(v) if v["kind"] == "App" => vec![Resource::App(serde_json::from_value(v).unwrap())],
        Ok(v) => vec![Resource::Host(serde_json::from_value(v).unwrap())],
        Err(e) => panic!("{e}"),
    };
    docs.iter().flat_map(validate).collect()
}

fn app_problems(roles: &str) -> Vec<(String, String)> {
    problems(&format!("apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: shop}}\nspec: {{image: shop:1, roles: {roles}}}\n"))
}

fn host(name: &str, proxy: &str) -> Host {
    let text = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}}}\nspec: {{endpoint: \"unix:///x\"{proxy}}}\n"
    );
    serde_yaml_ng::from_str(&text).unwrap()
}

#[test]
fn a_proxied_role_validates_and_its_bad_fields_are_named() {
    let ok = "{web: {hosts: [host1], proxy: {hosts: [shop.example.com], appPort: 3000, tls: acme}}}";
    assert_eq!(app_problems(ok), vec![]);
    let cases = [
        ("{web: {hosts: [host1], proxy: {hosts: [shop.test], appPort: 0}}}", "spec.roles.web.proxy.appPort"),
        ("{web: {hosts: [host1], proxy: {hosts: [\"shop.test:80\"], appPort: 1}}}", "spec.roles.web.proxy.hosts[0]"),
        (
            "{web: {hosts: [host1], proxy: {hosts: [shop.test], appPort: 1, pathPrefix: api}}}",
            "spec.roles.web.proxy.pathPrefix",
        ),
        (
            "{web: {hosts: [host1], proxy: {hosts: [shop.test], appPort: 1, tls: letsencrypt}}}",
            "spec.roles.web.proxy.tls",
        ),
        (
            "{web: {hosts: [host1], proxy: {hosts: [shop.test], appPort: 1, healthcheck: {interval: soon}}}}",
            "spec.roles.web.proxy.healthcheck.interval",
        ),
        (
            "{web: {hosts: [host1], ports: [\"80:80\"], proxy: {hosts: [shop.test], appPort: 80}}}",
            "spec.roles.web.ports",
        ),
    ];
    for (roles, path) in cases {
        let found = app_problems(roles);
        assert!(found.iter().any(|(p, _)| p == path), "{roles}: expected a problem at {path}, got {found:?}");
    }
}

#[test]
fn appport_is_required() {
    let text = "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {name: shop}\n\
                spec: {image: shop:1, roles: {web: {hosts: [host1], proxy: {hosts: [shop.test]}}}}\n";
    let err = parse_str("app.yaml", text).unwrap_err().to_string();
    assert!(err.contains("appPort"), "{err}");
}

#[test]
fn two_roles_of_one_app_may_not_route_the_same_name_and_prefix() {
    let roles = "{web: {hosts: [host1], proxy: {hosts: [shop.test], appPort: 80}}, \
                 api: {hosts: [host1], proxy: {hosts: [shop.test], appPort: 80}}}";
    let found = app_problems(roles);
    assert!(found.iter().any(|(p, m)| p == "spec.roles.web.proxy" && m.contains("shop.test")), "{found:?}");
    let split = "{web: {hosts: [host1], proxy: {hosts: [shop.test], appPort: 80}}, \
                 api: {hosts: [host1], proxy: {hosts: [shop.test], pathPrefix: /api, appPort: 80}}}";
    assert_eq!(app_problems(split), vec![], "another path prefix is another route");
}

#[test]
fn apply_refuses_a_route_another_app_claims_on_the_same_host_naming_both() {
    let hosts = [host("host1", ""), host("host2", "")];
    let route = |on: &str, prefix: &str| {
        format!("{{web: {{hosts: [{on}], proxy: {{hosts: [Shop.Test], pathPrefix: \"{prefix}\", appPort: 80}}}}}}")
    };
    let theirs = app_in("shop", "production", &route("host1", "/"));
    let mine = app_in("shop", "staging", &route("host1", "/"));
    let found = validate_against_store(&mine, &hosts, std::slice::from_ref(&theirs));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "spec.roles.web.proxy");
    assert!(
        found[0].1.contains("app/shop -n staging") && found[0].1.contains("app/shop -n production"),
        "{}",
        found[0].1
    );
    assert!(found[0].1.contains("shop.test on host1"), "{}", found[0].1);
    // Another host, or another prefix, is no clash; nor is the App itself.
    assert!(validate_against_store(
        &app_in("shop", "staging", &route("host2", "/")),
        &hosts,
        std::slice::from_ref(&theirs)
    )
    .is_empty());
    assert!(validate_against_store(
        &app_in("shop", "staging", &route("host1", "/v2")),
        &hosts,
        std::slice::from_ref(&theirs)
    )
    .is_empty());
    assert!(validate_against_store(&theirs, &hosts, std::slice::from_ref(&theirs)).is_empty());
}

#[test]
fn tls_needs_an_https_port_on_every_host_of_the_role() {
    let hosts = [host("host1", ", proxy: {httpsPort: 0}")];
    let acme = app_in("shop", "p", "{web: {hosts: [host1], proxy: {hosts: [shop.test], appPort: 80, tls: acme}}}");
    let found = validate_against_store(&acme, &hosts, &[]);
    assert!(found.iter().any(|(p, m)| p == "spec.roles.web.proxy.tls" && m.contains("host1")), "{found:?}");
    let plain = app_in("shop", "p", "{web: {hosts: [host1], proxy: {hosts: [shop.test], appPort: 80}}}");
    assert!(validate_against_store(&plain, &hosts, &[]).is_empty());
}

#[test]
fn host_proxy_settings_are_checked() {
    let bad = [
        ("proxy: {httpPort: 0}", "spec.proxy.httpPort"),
        ("proxy: {httpPort: 8080, httpsPort: 8080}", "spec.proxy.httpsPort"),
        ("proxy: {image: \"Not An Image\"}", "spec.proxy.image"),
    ];
    for (proxy, path) in bad {
        let text = format!("apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata: {{name: h}}\nspec: {{endpoint: \"unix:///x\", {proxy}}}\n");
        let found = problems(&text);
        assert!(found.iter().any(|(p, _)| p == path), "{proxy}: {found:?}");
    }
    let fine = "apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata: {name: h}\nspec: {endpoint: \"unix:///x\", proxy: {image: \"caddy:2\", httpPort: 8080, httpsPort: 8443}}\n";
    assert_eq!(problems(fine), vec![]);
}
