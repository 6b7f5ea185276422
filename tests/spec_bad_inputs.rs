//! Every kind of bad input a user can write, each with the exact error line berth prints.

use berth::spec::{load_sources, parse_str, validate_against_store, App, Host, Resource};

const WEB: &str = "roles: {web: {hosts: [host1]}}";

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// A valid App header with image `shop:1` and the given `spec` lines.
fn app(spec: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: shop}}\nspec:\n  image: shop:1\n{}",
        indent(spec)
    )
}

/// An App named `name` in `ns` publishing `port` from role web on host1.
fn app_with_port(name: &str, ns: &str, port: &str) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{image: shop:1, roles: {{web: {{hosts: [host1], ports: [\"{port}\"]}}}}}}\n"
    )
}

/// A Host `host1` with the given `spec` lines.
fn host(spec: &str) -> String {
    format!("apiVersion: berth.dev/v1alpha1\nkind: Host\nmetadata: {{name: host1}}\nspec:\n{}", indent(spec))
}

/// A named case: files `(name, text)` in, exact error lines out (in order, nothing else).
type Case = (&'static str, Vec<(&'static str, String)>, Vec<&'static str>);

fn cases() -> Vec<Case> {
    let one = |text: String| vec![("shop.yaml", text)];
    vec![
        (
            "unknown field",
            one(app("roles: {web: {hosts: [host1], prots: [\"80:80\"]}}")),
            vec!["shop.yaml[0]: spec.roles.web.prots: unknown field `prots`, expected one of `hosts`, `cmd`, `env`, `files`, `ports`, `volumes`, `healthcheck`, `dependsOn`, `labels`, `restart`, `memory`, `cpus`, `stopTimeout`, `stopSignal`, `proxy`, `hostEnv`, `readinessDelay`, `logging`, `options`"],
        ),
        (
            "wrong type",
            one(app("roles: {web: {hosts: host1}}")),
            vec!["shop.yaml[0]: spec.roles.web.hosts: invalid type: string \"host1\", expected a sequence"],
        ),
        (
            "wrong type for a number",
            one(app("roles: {web: {hosts: [host1], cpus: lots}}")),
            vec!["shop.yaml[0]: spec.roles.web.cpus: invalid type: string \"lots\", expected f64"],
        ),
        (
            "bad apiVersion",
            one(app(WEB).replace("berth.dev/v1alpha1", "berth.dev/v1")),
            vec!["shop.yaml[0]: apiVersion: unsupported apiVersion \"berth.dev/v1\" (expected \"berth.dev/v1alpha1\")"],
        ),
        (
            "missing apiVersion",
            one(app(WEB).replace("apiVersion: berth.dev/v1alpha1\n", "")),
            vec!["shop.yaml[0]: apiVersion: missing; expected \"berth.dev/v1alpha1\""],
        ),
        (
            "bad kind",
            one(app(WEB).replace("kind: App", "kind: Deployment")),
            vec!["shop.yaml[0]: kind: unknown kind \"Deployment\" (expected App or Host)"],
        ),
        (
            "missing kind",
            one(app(WEB).replace("kind: App\n", "")),
            vec!["shop.yaml[0]: kind: missing; expected App or Host"],
        ),
        (
            "missing name",
            one(app(WEB).replace("{name: shop}", "{namespace: production}")),
            vec!["shop.yaml[0]: metadata: missing field `name`"],
        ),
        (
            "non-DNS name",
            one(app(WEB).replace("{name: shop}", "{name: Shop_1}")),
            vec!["shop.yaml[0]: metadata.name: \"Shop_1\" is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"],
        ),
        (
            "uppercase namespace",
            one(app(WEB).replace("{name: shop}", "{name: shop, namespace: Production}")),
            vec!["shop.yaml[0]: metadata.namespace: \"Production\" is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"],
        ),
        (
            "port out of range",
            one(app("roles: {web: {hosts: [host1], ports: [\"70000:80\"]}}")),
            vec!["shop.yaml[0]: spec.roles.web.ports[0]: host port 70000 out of range"],
        ),
        (
            "port syntax",
            one(app("roles: {web: {hosts: [host1], ports: [\"80\"]}}")),
            vec!["shop.yaml[0]: spec.roles.web.ports[0]: bad port \"80\": expected [ip:]hostPort:containerPort[/tcp|udp]"],
        ),
        (
            "bad protocol",
            one(app("roles: {web: {hosts: [host1], ports: [\"80:80/sctp\"]}}")),
            vec!["shop.yaml[0]: spec.roles.web.ports[0]: unknown protocol \"sctp\" (use tcp or udp)"],
        ),
        (
            "bad ip",
            one(app("roles: {web: {hosts: [host1], ports: [\"10.0.0.300:80:80\"]}}")),
            vec!["shop.yaml[0]: spec.roles.web.ports[0]: bad ip \"10.0.0.300\""],
        ),
        (
            "duplicate host port in app",
            one(app("roles:\n  web: {hosts: [host1, host2], ports: [\"8080:80\"]}\n  admin: {hosts: [host2], ports: [\"127.0.0.1:8080:81\"]}")),
            vec!["shop.yaml[0]: spec.roles.web.ports[0]: host port 8080 on host2 already published by spec.roles.admin.ports[0]"],
        ),
        (
            "duplicate host port between role and accessory",
            one(app("roles: {web: {hosts: [host1], ports: [\"53:53/udp\"]}}\naccessories: {dns: {image: coredns, hosts: [host1], ports: [\"53:5353/udp\"]}}")),
            vec!["shop.yaml[0]: spec.accessories.dns.ports[0]: host port 53/udp on host1 already published by spec.roles.web.ports[0]"],
        ),
        (
            "bad volume",
            one(app("roles: {web: {hosts: [host1], volumes: [\"/data\"]}}")),
            vec!["shop.yaml[0]: spec.roles.web.volumes[0]: bad volume \"/data\": expected name:/path[:ro] or /host/path:/path[:ro]"],
        ),
        (
            "relative container path",
            one(app("roles: {web: {hosts: [host1], volumes: [\"data:var/data\"]}}")),
            vec!["shop.yaml[0]: spec.roles.web.volumes[0]: container path \"var/data\" must be absolute"],
        ),
        (
            "bad volume mode",
            one(app("roles: {web: {hosts: [host1], volumes: [\"/srv:/srv:rx\"]}}")),
            vec!["shop.yaml[0]: spec.roles.web.volumes[0]: unknown volume mode \"rx\" (use ro or rw)"],
        ),
        (
            "relative bind source",
            one(app("roles: {web: {hosts: [host1], volumes: [\"./data:/data\"]}}")),
            vec!["shop.yaml[0]: spec.roles.web.volumes[0]: bad volume name \"./data\": use letters, digits, '_', '.', '-' (bind mounts need an absolute host path)"],
        ),
        (
            "bad duration in healthcheck",
            one(app("roles: {web: {hosts: [host1], healthcheck: {cmd: [\"true\"], interval: 5x}}}")),
            vec!["shop.yaml[0]: spec.roles.web.healthcheck.interval: bad duration \"5x\""],
        ),
        (
            "bad duration in rollout",
            one(app(&format!("{WEB}\nrollout: {{healthTimeout: soon}}"))),
            vec!["shop.yaml[0]: spec.rollout.healthTimeout: bad duration \"soon\""],
        ),
        (
            "maxUnavailable 0",
            one(app(&format!("{WEB}\nrollout: {{maxUnavailable: 0}}"))),
            vec!["shop.yaml[0]: spec.rollout.maxUnavailable: maxUnavailable must be at least 1"],
        ),
        (
            "maxUnavailable 150%",
            one(app(&format!("{WEB}\nrollout: {{maxUnavailable: 150%}}"))),
            vec!["shop.yaml[0]: spec.rollout.maxUnavailable: maxUnavailable \"150%\" out of range (1%..100%)"],
        ),
        (
            "maxUnavailable abc",
            one(app(&format!("{WEB}\nrollout: {{maxUnavailable: abc}}"))),
            vec!["shop.yaml[0]: spec.rollout.maxUnavailable: bad maxUnavailable \"abc\": expected a count or a percentage such as \"25%\""],
        ),
        (
            "maxUnavailable negative",
            one(app(&format!("{WEB}\nrollout: {{maxUnavailable: -1}}"))),
            vec!["shop.yaml[0]: spec.rollout.maxUnavailable: expected a whole number or a percentage string such as \"25%\""],
        ),
        (
            "uppercase image",
            one(app(WEB).replace("image: shop:1", "image: Shop:1")),
            vec!["shop.yaml[0]: spec.image: bad image \"Shop:1\": repository must be lowercase"],
        ),
        (
            "empty image",
            one(app(WEB).replace("image: shop:1", "image: ''")),
            vec!["shop.yaml[0]: spec.image: image must not be empty"],
        ),
        (
            "bad digest",
            one(app(WEB).replace("image: shop:1", "image: shop@sha256:abc")),
            vec!["shop.yaml[0]: spec.image: bad image \"shop@sha256:abc\": digest must be sha256:<64 hex digits>"],
        ),
        (
            "bad accessory tag",
            one(app("accessories: {db: {image: \"postgres:-16\", hosts: [host1]}}")),
            vec!["shop.yaml[0]: spec.accessories.db.image: bad image \"postgres:-16\": bad tag \"-16\""],
        ),
        (
            "dependsOn missing accessory",
            one(app("roles: {web: {hosts: [host1], dependsOn: [db]}}\naccessories: {cache: {image: redis, hosts: [host1]}}")),
            vec!["shop.yaml[0]: spec.roles.web.dependsOn[0]: no accessory named \"db\" in this app"],
        ),
        (
            "role with no hosts",
            one(app("roles: {web: {hosts: []}}")),
            vec!["shop.yaml[0]: spec.roles.web.hosts: role has no hosts"],
        ),
        (
            "accessory with no hosts",
            one(app("accessories: {db: {image: postgres, hosts: []}}")),
            vec!["shop.yaml[0]: spec.accessories.db.hosts: accessory has no hosts and no roles: give hosts, roles or both"],
        ),
        (
            "accessory placed on an unknown role",
            one(app("roles: {web: {hosts: [host1]}}\naccessories: {db: {image: postgres, roles: [api]}}")),
            vec!["shop.yaml[0]: spec.accessories.db.roles[0]: no role named \"api\" in this app"],
        ),
        (
            "accessory placed by role publishes on that role's hosts",
            one(app("roles: {web: {hosts: [host1, host2], ports: [\"80:80\"]}}\naccessories: {db: {image: postgres, roles: [web], ports: [\"80:5432\"]}}")),
            vec![
                "shop.yaml[0]: spec.accessories.db.ports[0]: host port 80 on host1 already published by spec.roles.web.ports[0]",
            ],
        ),
        (
            "hostEnv for a host the role does not run on",
            one(app("roles: {web: {hosts: [host1], hostEnv: {host2: {TAG: b}, host1: {\"A=B\": x}}}}")),
            vec![
                "shop.yaml[0]: spec.roles.web.hostEnv.host1[\"A=B\"]: env key \"A=B\" must not contain '='",
                "shop.yaml[0]: spec.roles.web.hostEnv.host2: host \"host2\" is not one of this role's hosts",
            ],
        ),
        (
            "hostEnv secret without a key",
            one(app("roles: {web: {hosts: [host1], hostEnv: {host1: {TOKEN: {secretKeyRef: {name: tags, key: \"\"}}}}}}")),
            vec!["shop.yaml[0]: spec.roles.web.hostEnv.host1.TOKEN.secretKeyRef.key: names no key"],
        ),
        (
            "bad readinessDelay",
            one(app("roles: {web: {hosts: [host1], readinessDelay: soon}}")),
            vec!["shop.yaml[0]: spec.roles.web.readinessDelay: bad duration \"soon\""],
        ),
        (
            "readinessDelay as long as the health timeout",
            one(app(&format!("{WEB}\nroles: {{web: {{hosts: [host1], readinessDelay: 1m}}}}").replace(&format!("{WEB}\n"), ""))),
            vec!["shop.yaml[0]: spec.roles.web.readinessDelay: readinessDelay 1m is not shorter than rollout.healthTimeout 1m: no container would ever count as ready"],
        ),
        (
            "bad log driver and option",
            one(app("logging: {driver: \"json file\"}\nroles: {web: {hosts: [host1], logging: {options: {\"max size\": 1m}}}}")),
            vec![
                "shop.yaml[0]: spec.logging.driver: log driver \"json file\" must be one word such as \"json-file\"",
                "shop.yaml[0]: spec.roles.web.logging.options: log option name \"max size\" must be one word without '='",
            ],
        ),
        (
            "unknown logging field",
            one(app("roles: {web: {hosts: [host1], logging: {type: syslog}}}")),
            vec!["shop.yaml[0]: spec.roles.web.logging.type: unknown field `type`, expected `driver` or `options`"],
        ),
        (
            "bad options",
            one(app("roles: {web: {hosts: [host1], options: {addHosts: [db, \"db:1.2.3\"], capAdd: [\"net admin\"], devices: [fuse], ulimits: {nofile: \"2048:1024\", files: 1}, shmSize: \"0\", user: \"a b\", workdir: app, network: bridge}}}")),
            vec![
                "shop.yaml[0]: spec.roles.web.options.addHosts[0]: bad addHosts entry \"db\": expected name:ip (or name:host-gateway)",
                "shop.yaml[0]: spec.roles.web.options.addHosts[1]: bad addHosts entry \"db:1.2.3\": bad ip \"1.2.3\"",
                "shop.yaml[0]: spec.roles.web.options.capAdd[0]: bad capability \"net admin\": expected a name such as NET_ADMIN",
                "shop.yaml[0]: spec.roles.web.options.devices[0]: bad device \"fuse\": host path \"fuse\" must be absolute",
                "shop.yaml[0]: spec.roles.web.options.ulimits.files: unknown ulimit \"files\" (use one of core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)",
                "shop.yaml[0]: spec.roles.web.options.ulimits.nofile: bad ulimit nofile: soft limit 2048 is above the hard limit 1024",
                "shop.yaml[0]: spec.roles.web.options.user: bad user \"a b\": expected user[:group], by name or id (1000:1000)",
                "shop.yaml[0]: spec.roles.web.options.workdir: workdir \"app\" must be an absolute path",
                "shop.yaml[0]: spec.roles.web.options.shmSize: shmSize must be greater than 0",
                "shop.yaml[0]: spec.roles.web.options.network: network \"bridge\" is not supported: use \"host\", or leave it out for the app's own network",
            ],
        ),
        (
            "host network with ports",
            one(app("accessories: {dns: {image: coredns, hosts: [host1], ports: [\"53:53/udp\"], options: {network: host}}}")),
            vec!["shop.yaml[0]: spec.accessories.dns.ports: a container on the host network publishes no ports: it listens on the host's own (remove ports or options.network)"],
        ),
        (
            "bad accessory directories",
            one(app("accessories: {db: {image: mysql, hosts: [host1], directories: [\"/srv/data:/var/lib/mysql\", \"data:var/lib\", data]}}")),
            vec![
                "shop.yaml[0]: spec.accessories.db.directories[0]: directory \"/srv/data:/var/lib/mysql\" names a host path: a directory is a name under /var/lib/berth/APP-NAMESPACE/ACCESSORY (mount a host path with volumes)",
                "shop.yaml[0]: spec.accessories.db.directories[1]: container path \"var/lib\" must be absolute",
                "shop.yaml[0]: spec.accessories.db.directories[2]: bad directory \"data\": expected name:/path[:ro]",
            ],
        ),
        (
            "bad host name reference",
            one(app("roles: {web: {hosts: [host1, Web_2]}}")),
            vec!["shop.yaml[0]: spec.roles.web.hosts[1]: \"Web_2\" is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"],
        ),
        (
            "host listed twice",
            one(app("roles: {web: {hosts: [host1, host1]}}")),
            vec!["shop.yaml[0]: spec.roles.web.hosts[1]: host \"host1\" listed twice"],
        ),
        (
            "bad role name",
            one(app("roles: {Web: {hosts: [host1]}}")),
            vec!["shop.yaml[0]: spec.roles.Web: \"Web\" is not a valid role name: use at most 63 lowercase letters, digits, '-' and '_', starting and ending with a letter or digit"],
        ),
        (
            "role name starting with '_'",
            one(app("roles: {_web: {hosts: [host1]}}")),
            vec!["shop.yaml[0]: spec.roles._web: \"_web\" is not a valid role name: use at most 63 lowercase letters, digits, '-' and '_', starting and ending with a letter or digit"],
        ),
        (
            "role name ending with '_'",
            one(app("roles: {web_: {hosts: [host1]}}")),
            vec!["shop.yaml[0]: spec.roles.web_: \"web_\" is not a valid role name: use at most 63 lowercase letters, digits, '-' and '_', starting and ending with a letter or digit"],
        ),
        (
            "bad accessory name",
            one(app(&format!("{WEB}\naccessories: {{Db_main: {{image: postgres, hosts: [host1]}}}}"))),
            vec!["shop.yaml[0]: spec.accessories.Db_main: \"Db_main\" is not a valid accessory name: use at most 63 lowercase letters, digits, '-' and '_', starting and ending with a letter or digit"],
        ),
        (
            "bad memory",
            one(app("roles: {web: {hosts: [host1], memory: 512MB}}")),
            vec!["shop.yaml[0]: spec.roles.web.memory: bad memory \"512MB\": expected a number with an optional b, k, m or g suffix (e.g. 512m)"],
        ),
        (
            "cpus 0",
            one(app("roles: {web: {hosts: [host1], cpus: 0}}")),
            vec!["shop.yaml[0]: spec.roles.web.cpus: cpus must be greater than 0 (got 0)"],
        ),
        (
            "bad restart",
            one(app("roles: {web: {hosts: [host1], restart: sometimes}}")),
            vec!["shop.yaml[0]: spec.roles.web.restart: bad restart policy \"sometimes\" (use no, always, unless-stopped or on-failure[:N])"],
        ),
        (
            "empty cmd",
            one(app("roles: {web: {hosts: [host1], cmd: []}}")),
            vec!["shop.yaml[0]: spec.roles.web.cmd: cmd must not be empty"],
        ),
        (
            "cmd of the wrong type",
            one(app("roles: {web: {hosts: [host1], cmd: 42}}")),
            vec!["shop.yaml[0]: spec.roles.web.cmd: expected a shell string or a list of strings"],
        ),
        (
            "role and accessory name clash",
            one(app("roles: {db: {hosts: [host1]}}\naccessories: {db: {image: postgres, hosts: [host1]}}")),
            vec!["shop.yaml[0]: spec.accessories.db: \"db\" is both a role and an accessory name (they share network aliases)"],
        ),
        (
            "env key with '='",
            one(app(&format!("{WEB}\nenv: {{\"A=B\": x}}"))),
            vec!["shop.yaml[0]: spec.env[\"A=B\"]: env key \"A=B\" must not contain '='"],
        ),
        (
            "empty env key in a role",
            one(app("roles: {web: {hosts: [host1], env: {\"\": x}}}")),
            vec!["shop.yaml[0]: spec.roles.web.env[\"\"]: env key must not be empty"],
        ),
        (
            "app with nothing to run",
            one(app("env: {A: b}")),
            vec!["shop.yaml[0]: spec: app has no roles and no accessories: nothing to run"],
        ),
        (
            "tcp without tls",
            one(host("endpoint: tcp://10.0.0.5:2375")),
            vec!["shop.yaml[0]: spec.endpoint: plain tcp needs spec.tls or spec.insecure: true"],
        ),
        (
            "bad endpoint scheme",
            one(host("endpoint: http://10.0.0.5:2375")),
            vec!["shop.yaml[0]: spec.endpoint: unsupported endpoint \"http://10.0.0.5:2375\": use unix:///path, tcp://ADDR:PORT or ssh://user@addr[:port]"],
        ),
        (
            "unix relative path",
            one(host("endpoint: unix://var/run/docker.sock")),
            vec!["shop.yaml[0]: spec.endpoint: unix socket path \"var/run/docker.sock\" must be absolute (unix:///path)"],
        ),
        (
            "tls files for unix",
            one(host("endpoint: unix:///var/run/docker.sock\ntls: {ca: ca.pem, cert: cert.pem, key: key.pem}")),
            vec!["shop.yaml[0]: spec.tls: tls files only apply to tcp:// endpoints"],
        ),
        (
            "tcp without port",
            one(host("endpoint: tcp://10.0.0.5\ninsecure: true")),
            vec!["shop.yaml[0]: spec.endpoint: bad tcp endpoint \"tcp://10.0.0.5\": expected tcp://ADDR:PORT"],
        ),
        (
            "ssh without user",
            one(host("endpoint: ssh://10.0.0.5")),
            vec!["shop.yaml[0]: spec.endpoint: bad ssh endpoint \"ssh://10.0.0.5\": expected ssh://user@addr[:port][/docker/socket/path]"],
        ),
        (
            "document that is not a mapping",
            one(format!("{}---\n- just\n- a list\n", app(WEB))),
            vec!["shop.yaml[1]: expected a resource (a mapping), found a list"],
        ),
        (
            "YAML syntax error",
            one("apiVersion: berth.dev/v1alpha1\nkind: [App\n".to_string()),
            vec!["shop.yaml[0]: invalid YAML: did not find expected ',' or ']' at line 3 column 1, while parsing a flow sequence at line 2 column 7"],
        ),
        (
            "JSON syntax error",
            vec![("shop.json", "{\"apiVersion\": }".to_string())],
            vec!["shop.json: invalid JSON: expected value at line 1 column 16"],
        ),
        (
            "duplicate documents across files",
            vec![("a.yaml", app(WEB)), ("b.yaml", format!("{}---\n{}", host("endpoint: unix:///d.sock"), app(WEB)))],
            vec!["b.yaml[1]: metadata.name: app/shop -n default is defined twice (also at a.yaml[0])"],
        ),
        (
            "same name in another namespace is not a duplicate, a second host is",
            vec![
                ("a.yaml", format!("{}---\n{}", app_with_port("shop", "staging", "80:80"), host("endpoint: unix:///a.sock"))),
                ("b.yaml", format!("{}---\n{}", app_with_port("shop", "production", "81:80"), host("endpoint: unix:///b.sock"))),
            ],
            vec!["b.yaml[1]: metadata.name: host/host1 is defined twice (also at a.yaml[1])"],
        ),
        (
            "errors of several documents and files are all reported",
            vec![
                ("a.yaml", format!("{}---\n{}", app("roles: {web: {hosts: []}}"), host("endpoint: tcp://h:1"))),
                ("b.yaml", app("roles: {web: {hosts: [host1], ports: [\"0:80\"], memory: x}}")),
            ],
            vec![
                "a.yaml[0]: spec.roles.web.hosts: role has no hosts",
                "a.yaml[1]: spec.endpoint: plain tcp needs spec.tls or spec.insecure: true",
                "b.yaml[0]: spec.roles.web.ports[0]: host port 0 out of range",
                "b.yaml[0]: spec.roles.web.memory: bad memory \"x\": expected a number with an optional b, k, m or g suffix (e.g. 512m)",
                "b.yaml[0]: metadata.name: app/shop -n default is defined twice (also at a.yaml[0])",
            ],
        ),
    ]
}

#[test]
fn every_bad_input_reports_its_exact_error() {
    let cases = cases();
    assert!(cases.len() >= 35, "the table should cover at least 35 bad inputs");
    let mut failures = Vec::new();
    for (name, files, want) in cases {
        let sources: Vec<(String, String)> = files.into_iter().map(|(f, t)| (f.to_string(), t)).collect();
        let got = match load_sources(&sources) {
            Ok(_) => vec!["<accepted>".to_string()],
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        };
        if got != want {
            failures.push(format!("{name}:\n  want {want:#?}\n  got  {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// Kamal's role names (`web_new`) pass: `_` inside a role or accessory name; metadata names stay DNS
/// labels.
#[test]
fn underscores_inside_role_and_accessory_names_are_accepted() {
    let text = app("roles: {web_new: {hosts: [host1], dependsOn: [db_main]}, a_b-c_9: {hosts: [host1]}}\n\
                    accessories: {db_main: {image: postgres, hosts: [host1]}}");
    let loaded = load_sources(&[("shop.yaml".to_string(), text)]).unwrap_or_else(|e| panic!("{e}"));
    let Resource::App(shop) = &loaded[0].resource else { panic!("not an App") };
    assert!(shop.spec.roles.contains_key("web_new") && shop.spec.accessories.contains_key("db_main"));
    let longest = format!("w{}w", "_".repeat(61));
    assert!(load_sources(&[("a.yaml".to_string(), app(&format!("roles: {{{longest}: {{hosts: [host1]}}}}")))]).is_ok());
    let too_long = format!("w{}w", "_".repeat(62));
    let err = load_sources(&[("a.yaml".to_string(), app(&format!("roles: {{{too_long}: {{hosts: [host1]}}}}")))])
        .unwrap_err();
    assert!(err.to_string().contains("is not a valid role name"), "{err}");
    let named = app(WEB).replace("{name: shop}", "{name: web_new}");
    let err = load_sources(&[("a.yaml".to_string(), named)]).unwrap_err();
    assert!(err.to_string().starts_with("a.yaml[0]: metadata.name: \"web_new\" is not a valid name"), "{err}");
}

fn only_app(text: &str) -> App {
    match parse_str("t.yaml", text).unwrap().remove(0) {
        Resource::App(a) => a,
        other => panic!("expected an App, got {other:?}"),
    }
}

fn hosts(names: &[&str]) -> Vec<Host> {
    let docs: String = names.iter().map(|n| host("endpoint: unix:///d.sock").replace("host1", n) + "---\n").collect();
    parse_str("hosts.yaml", &docs)
        .unwrap()
        .into_iter()
        .map(|r| match r {
            Resource::Host(h) => h,
            other => panic!("expected a Host, got {other:?}"),
        })
        .collect()
}

/// `(path, message)` pairs rendered the way `berth apply` prints them.
fn store_errors(app: &App, hosts: &[Host], others: &[App]) -> Vec<String> {
    validate_against_store(app, hosts, others).into_iter().map(|(p, m)| format!("{p}: {m}")).collect()
}

#[test]
fn store_check_undefined_host() {
    let app = only_app(&app("roles: {web: {hosts: [host1, web-9]}}\naccessories: {db: {image: pg, hosts: [db-1]}}"));
    assert_eq!(
        store_errors(&app, &hosts(&["host1"]), &[]),
        [
            "spec.roles.web.hosts[1]: host \"web-9\" is not defined by any Host resource",
            "spec.accessories.db.hosts[0]: host \"db-1\" is not defined by any Host resource",
        ]
    );
}

#[test]
fn store_check_port_taken_by_another_app_or_namespace() {
    let mine = only_app(&app_with_port("shop", "production", "8080:80"));
    let staging = only_app(&app_with_port("shop", "staging", "8080:80"));
    let blog = only_app(&app_with_port("blog", "production", "0.0.0.0:8080:8000"));
    let hosts = hosts(&["host1"]);
    assert_eq!(
        store_errors(&mine, &hosts, &[staging.clone(), blog.clone()]),
        ["spec.roles.web.ports[0]: host port 8080 on host1 already published by app/shop -n staging"]
    );
    assert_eq!(
        store_errors(&mine, &hosts, &[blog]),
        ["spec.roles.web.ports[0]: host port 8080 on host1 already published by app/blog -n production"]
    );
}

#[test]
fn store_check_ignores_itself_other_ips_and_protocols() {
    let mine = only_app(&app_with_port("shop", "production", "10.0.0.1:8080:80"));
    let hosts = hosts(&["host1"]);
    let others = [
        mine.clone(),
        only_app(&app_with_port("blog", "production", "10.0.0.2:8080:80")),
        only_app(&app_with_port("dns", "production", "8080:80/udp")),
    ];
    assert!(store_errors(&mine, &hosts, &others).is_empty());
}
