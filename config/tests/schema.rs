//! The schema of `docs/formats.md`: defaults, the documented example, every validation
//! error with its position, unknown-key warnings, and the `to_toml` round trip.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use petrel_config::{
    Autostart, Boot, Bridge, Config, ConfigError, Ipv4Mode, Ipv6Mode, Management, NetAttach,
    Network, NtpServer, Parsed, Position, Restart, Service, Time, Uplink,
};

/// The example of `docs/formats.md`, read from there so that the two cannot drift.
fn documented_example_text() -> &'static str {
    let doc = include_str!("../../docs/formats.md");
    let start = doc.find("```toml\n").expect("a toml block in formats.md") + 8;
    let len = doc[start..].find("```").expect("the block's end");
    &doc[start..start + len]
}

/// Every key set to something other than its default.
const FULL: &str = r#"
version = 1
hostname = "edge-7"

[network]
dns = ["192.0.2.53", "2001:db8::53"]

[[network.bridges]]
name = "service"
uplink = "enp1s0"
ipv4 = "192.0.2.10/24"
gateway = "192.0.2.1"
ipv6 = "2001:db8::10/64"
mtu = 9000

[[network.bridges]]
name = "internal_0"
uplink = "none"
ipv4 = "none"
ipv6 = "none"
mtu = 1400

[time]
ntp = ["192.0.2.123", "pool.ntp.example."]

[boot]
trial_deadline_secs = 600
watchdog = false

[[services]]
name = "hello"
command = ["/bin/petrel-hvt", "--mem=2", "/boot/efi/petrel/images/hello.hvt"]
restart = "on-failure"

[[services]]
name = "time.v2"
command = ["/bin/petrel-hvt", "a \"quoted\" arg\twith tab", "ünïcode"]
restart = "never"

[management]
admin = "ops/eu.west"
listen = "[2001:db8::10]:8443"
metrics = "127.0.0.1:9100"

[[unikernels]]
name = "web"
image = "web-1.2.hvt"
memory_mib = 64
args = ["--ipv4=192.0.2.100/24", "--name=\"x\""]
net = ["service", "admin=internal_0"]
restart = "on-failure"
priority = -5

[[unikernels]]
name = "dns_0"
image = "dns.hvt"
"#;

fn parse(text: &str) -> Parsed {
    Config::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn full_config() -> Config {
    Config {
        version: 1,
        hostname: "edge-7".into(),
        network: Network {
            dns: vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)),
                "2001:db8::53".parse().unwrap(),
            ],
            bridges: vec![
                Bridge {
                    name: "service".into(),
                    uplink: Uplink::Nic("enp1s0".into()),
                    ipv4: Ipv4Mode::Static {
                        addr: Ipv4Addr::new(192, 0, 2, 10),
                        prefix: 24,
                        gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                    },
                    ipv6: Ipv6Mode::Static {
                        addr: "2001:db8::10".parse::<Ipv6Addr>().unwrap(),
                        prefix: 64,
                    },
                    mtu: 9000,
                },
                Bridge {
                    name: "internal_0".into(),
                    uplink: Uplink::None,
                    ipv4: Ipv4Mode::None,
                    ipv6: Ipv6Mode::None,
                    mtu: 1400,
                },
            ],
        },
        time: Time {
            ntp: vec![
                NtpServer::Addr(Ipv4Addr::new(192, 0, 2, 123)),
                NtpServer::Name("pool.ntp.example.".into()),
            ],
        },
        boot: Boot {
            trial_deadline_secs: 600,
            watchdog: false,
        },
        services: vec![
            Service {
                name: "hello".into(),
                command: vec![
                    "/bin/petrel-hvt".into(),
                    "--mem=2".into(),
                    "/boot/efi/petrel/images/hello.hvt".into(),
                ],
                restart: Restart::OnFailure,
            },
            Service {
                name: "time.v2".into(),
                command: vec![
                    "/bin/petrel-hvt".into(),
                    "a \"quoted\" arg\twith tab".into(),
                    "ünïcode".into(),
                ],
                restart: Restart::Never,
            },
        ],
        management: Management {
            admin: Some("ops/eu.west".into()),
            listen: "[2001:db8::10]:8443".parse().unwrap(),
            metrics: Some("127.0.0.1:9100".parse().unwrap()),
        },
        unikernels: vec![
            Autostart {
                name: "web".into(),
                image: "web-1.2.hvt".into(),
                memory_mib: 64,
                args: vec!["--ipv4=192.0.2.100/24".into(), "--name=\"x\"".into()],
                net: vec![
                    NetAttach {
                        device: "service".into(),
                        bridge: "service".into(),
                    },
                    NetAttach {
                        device: "admin".into(),
                        bridge: "internal_0".into(),
                    },
                ],
                restart: Restart::OnFailure,
                priority: -5,
            },
            Autostart {
                name: "dns_0".into(),
                image: "dns.hvt".into(),
                memory_mib: 32,
                args: vec![],
                net: vec![],
                restart: Restart::Always,
                priority: 0,
            },
        ],
    }
}

#[test]
fn defaults() {
    let c = Config::default();
    assert_eq!(c.version, 1);
    assert_eq!(c.hostname, "petrel");
    assert!(c.network.dns.is_empty());
    assert_eq!(
        c.network.bridges,
        vec![Bridge {
            name: "service".into(),
            uplink: Uplink::Auto,
            ipv4: Ipv4Mode::Dhcp,
            ipv6: Ipv6Mode::Auto,
            mtu: 1500,
        }]
    );
    assert!(c.time.ntp.is_empty());
    assert_eq!(c.boot.trial_deadline_secs, 300);
    assert!(c.boot.watchdog);
    assert!(c.services.is_empty());
    assert_eq!(c.management.admin, None);
    assert_eq!(c.management.listen.to_string(), "0.0.0.0:1025");
    assert_eq!(c.management.metrics, None);
    assert!(c.unikernels.is_empty());
    assert_eq!(c.bridge("service"), Some(&c.network.bridges[0]));
    assert_eq!(c.bridge("other"), None);

    // An empty file, comments only, and empty tables all mean the defaults.
    for text in ["", "# nothing\n\n", "[network]\n[time]\n[boot]\n"] {
        let p = parse(text);
        assert_eq!(p.config, c, "{text:?}");
        assert!(p.warnings.is_empty(), "{text:?}: {:?}", p.warnings);
    }
}

#[test]
fn documented_example() {
    let p = parse(documented_example_text());
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let mut want = Config::default();
    want.services.push(Service {
        name: "hello".into(),
        command: vec![
            "/bin/petrel-hvt".into(),
            "--mem=2".into(),
            "/boot/efi/petrel/images/hello.hvt".into(),
        ],
        restart: Restart::Always,
    });
    want.management.admin = Some("ops".into());
    want.unikernels.push(Autostart {
        name: "web".into(),
        image: "web.hvt".into(),
        memory_mib: 32,
        args: vec!["--ipv4=10.0.2.100/24".into()],
        net: vec![NetAttach {
            device: "service".into(),
            bridge: "service".into(),
        }],
        restart: Restart::Always,
        priority: 0,
    });
    assert_eq!(p.config, want);
}

#[test]
fn full_example() {
    let p = parse(FULL);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.config, full_config());
}

#[test]
fn partial_bridge_takes_defaults() {
    let p =
        parse("[[network.bridges]]\nmtu = 68\n[[services]]\nname = \"a\"\ncommand = [\"/a\"]\n");
    assert_eq!(
        p.config.network.bridges,
        vec![Bridge {
            mtu: 68,
            ..Bridge::default()
        }]
    );
    assert_eq!(p.config.services[0].restart, Restart::Always);
    // A /31 and a /32 have no network or broadcast address to avoid.
    let p = parse("[[network.bridges]]\nipv4 = \"10.0.0.0/31\"\ngateway = \"10.0.0.1\"\n");
    assert_eq!(
        p.config.network.bridges[0].ipv4,
        Ipv4Mode::Static {
            addr: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 31,
            gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
        }
    );
    parse("[[network.bridges]]\nipv4 = \"10.0.0.7/32\"\n");
    parse("[[network.bridges]]\nmtu = 65535\n");
    parse("[[network.bridges]]\nuplink = \"eth0.100\"\n");
    parse("[[network.bridges]]\nname = \"abcdefghijklmno\"\n");
    parse("[boot]\ntrial_deadline_secs = 30\n");
    parse("[boot]\ntrial_deadline_secs = 86400\n");
}

/// Each case: text, the expected line and column, and a piece of the message.
const INVALID: &[(&str, usize, usize, &str)] = &[
    // TOML itself and types.
    ("hostname = \"x\"\nbroken", 2, 7, ""),
    ("a = 1\na = 2\n", 2, 1, "duplicate key"),
    ("hostname = 3", 1, 12, "invalid type"),
    ("[boot]\nwatchdog = \"yes\"", 2, 12, "invalid type"),
    ("[[network.bridges]]\nmtu = \"1500\"", 2, 7, "invalid type"),
    ("[network]\nbridges = 3", 2, 11, "invalid type"),
    ("services = \"x\"", 1, 12, "invalid type"),
    // version
    ("version = 0", 1, 11, "version 0"),
    ("version = -1", 1, 11, "version -1"),
    ("version = 4294967296", 1, 11, "version 4294967296"),
    // hostname
    ("hostname = \"\"", 1, 12, "RFC 1123"),
    ("hostname = \"-box\"", 1, 12, "RFC 1123"),
    ("hostname = \"box-\"", 1, 12, "RFC 1123"),
    ("hostname = \"my.box\"", 1, 12, "RFC 1123"),
    ("hostname = \"b_x\"", 1, 12, "RFC 1123"),
    (
        "hostname = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
        1,
        12,
        "RFC 1123",
    ),
    // dns
    (
        "[network]\ndns = [\"192.0.2.1\", \"resolver\"]",
        2,
        21,
        "dns server \"resolver\"",
    ),
    // bridge names
    ("[[network.bridges]]\nname = \"\"", 2, 8, "1 to 15 bytes"),
    (
        "[[network.bridges]]\nname = \"abcdefghijklmnop\"",
        2,
        8,
        "1 to 15 bytes",
    ),
    (
        "[[network.bridges]]\nname = \"br.0\"",
        2,
        8,
        "characters other than",
    ),
    (
        "[[network.bridges]]\nname = \"brü\"",
        2,
        8,
        "characters other than",
    ),
    ("[[network.bridges]]\nname = \"auto\"", 2, 8, "reserved"),
    (
        "[[network.bridges]]\nname = \"a\"\nuplink = \"none\"\n\n[[network.bridges]]\nname = \"a\"\nuplink = \"none\"",
        6,
        8,
        "bridge name \"a\" is used twice",
    ),
    // uplinks
    ("[[network.bridges]]\nuplink = \"\"", 2, 10, "uplink \"\""),
    (
        "[[network.bridges]]\nuplink = \"eth/0\"",
        2,
        10,
        "interface name",
    ),
    (
        "[[network.bridges]]\nuplink = \"eth 0\"",
        2,
        10,
        "interface name",
    ),
    (
        "[[network.bridges]]\nuplink = \"..\"",
        2,
        10,
        "interface name",
    ),
    (
        "[[network.bridges]]\nuplink = \"abcdefghijklmnop\"",
        2,
        10,
        "interface name",
    ),
    (
        "[[network.bridges]]\nname = \"a\"\nuplink = \"eth0\"\n[[network.bridges]]\nname = \"b\"\nuplink = \"eth0\"",
        6,
        10,
        "uplink \"eth0\" is already the uplink of bridge \"a\"",
    ),
    (
        "[[network.bridges]]\nname = \"a\"\n[[network.bridges]]\nname = \"b\"\nuplink = \"auto\"",
        5,
        10,
        "uplink \"auto\" is already the uplink of bridge \"a\"",
    ),
    (
        "[[network.bridges]]\nname = \"a\"\nuplink = \"b\"\n[[network.bridges]]\nname = \"b\"\nuplink = \"none\"",
        3,
        10,
        "uplink \"b\" is a bridge",
    ),
    // ipv4
    (
        "[[network.bridges]]\nipv4 = \"static\"",
        2,
        8,
        "is not \"dhcp\", \"none\" or A.B.C.D/N",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.1\"",
        2,
        8,
        "A.B.C.D/N",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.256/24\"",
        2,
        8,
        "A.B.C.D/N",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.1/33\"",
        2,
        8,
        "prefix length",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.1/0\"",
        2,
        8,
        "prefix length",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.1/+8\"",
        2,
        8,
        "prefix length",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.1/\"",
        2,
        8,
        "prefix length",
    ),
    (
        "[[network.bridges]]\nipv4 = \"224.0.0.1/4\"",
        2,
        8,
        "unicast",
    ),
    (
        "[[network.bridges]]\nipv4 = \"127.0.0.1/8\"",
        2,
        8,
        "unicast",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.0/24\"",
        2,
        8,
        "network or broadcast",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.255/24\"",
        2,
        8,
        "network or broadcast",
    ),
    // gateway
    (
        "[[network.bridges]]\ngateway = \"10.0.0.1\"",
        2,
        11,
        "gateway needs a static ipv4 address (ipv4 is \"dhcp\")",
    ),
    (
        "[[network.bridges]]\nipv4 = \"none\"\ngateway = \"10.0.0.1\"",
        3,
        11,
        "(ipv4 is \"none\")",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.2/24\"\ngateway = \"router\"",
        3,
        11,
        "not an IPv4 address",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.2/24\"\ngateway = \"10.0.1.1\"",
        3,
        11,
        "gateway 10.0.1.1 is outside 10.0.0.0/24",
    ),
    (
        "[[network.bridges]]\nipv4 = \"10.0.0.2/24\"\ngateway = \"10.0.0.2\"",
        3,
        11,
        "own address",
    ),
    // ipv6
    (
        "[[network.bridges]]\nipv6 = \"slaac\"",
        2,
        8,
        "is not \"auto\", \"none\" or ADDR/N",
    ),
    (
        "[[network.bridges]]\nipv6 = \"2001:db8::1\"",
        2,
        8,
        "ADDR/N",
    ),
    (
        "[[network.bridges]]\nipv6 = \"2001:db8::1/129\"",
        2,
        8,
        "prefix length",
    ),
    ("[[network.bridges]]\nipv6 = \"::1/128\"", 2, 8, "unicast"),
    (
        "[[network.bridges]]\nipv6 = \"ff02::1/64\"",
        2,
        8,
        "unicast",
    ),
    // mtu
    (
        "[[network.bridges]]\nmtu = 67",
        2,
        7,
        "mtu 67 is outside 68..=65535",
    ),
    ("[[network.bridges]]\nmtu = 65536", 2, 7, "mtu 65536"),
    ("[[network.bridges]]\nmtu = -1500", 2, 7, "mtu -1500"),
    // time
    (
        "[time]\nntp = [\"pool.ntp.org\", \"bad name\"]",
        2,
        24,
        "ntp server \"bad name\"",
    ),
    ("[time]\nntp = [\"2001:db8::1\"]", 2, 8, "ntp server"),
    // boot
    (
        "[boot]\ntrial_deadline_secs = 0",
        2,
        23,
        "trial_deadline_secs 0 is outside 30..=86400",
    ),
    ("[boot]\ntrial_deadline_secs = 86401", 2, 23, "outside"),
    // services
    (
        "[[services]]\ncommand = [\"/a\"]",
        1,
        1,
        "service without a name",
    ),
    (
        "[[services]]\nname = \"\"\ncommand = [\"/a\"]",
        2,
        8,
        "service name \"\"",
    ),
    (
        "[[services]]\nname = \"a b\"\ncommand = [\"/a\"]",
        2,
        8,
        "service name \"a b\"",
    ),
    (
        "[[services]]\nname = \"a\"",
        2,
        8,
        "service \"a\" has no command",
    ),
    (
        "[[services]]\nname = \"a\"\ncommand = []",
        3,
        11,
        "empty command",
    ),
    (
        "[[services]]\nname = \"a\"\ncommand = [\"petrel-hvt\"]",
        3,
        12,
        "not an absolute path",
    ),
    (
        "[[services]]\nname = \"a\"\ncommand = [\"/a\", \"b\\u0000\"]",
        3,
        18,
        "NUL",
    ),
    (
        "[[services]]\nname = \"a\"\ncommand = [\"/a\"]\nrestart = \"sometimes\"",
        4,
        11,
        "restart \"sometimes\"",
    ),
    (
        "[[services]]\nname = \"a\"\ncommand = [\"/a\"]\n\n[[services]]\nname = \"a\"\ncommand = [\"/b\"]",
        6,
        8,
        "service name \"a\" is used twice",
    ),
    // management
    (
        "[management]
admin = \"\"",
        2,
        9,
        "admin \"\" is not an identity path",
    ),
    (
        "[management]
admin = \"ops/\"",
        2,
        9,
        "identity path",
    ),
    (
        "[management]
admin = \"/ops\"",
        2,
        9,
        "identity path",
    ),
    (
        "[management]
admin = \"ops/../x\"",
        2,
        9,
        "identity path",
    ),
    (
        "[management]
admin = \"o ps\"",
        2,
        9,
        "identity path",
    ),
    (
        "[management]
admin = \"a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q\"",
        2,
        9,
        "identity path",
    ),
    (
        "[management]
admin = 3",
        2,
        9,
        "invalid type",
    ),
    (
        "[management]
listen = \"1025\"",
        2,
        10,
        "listen \"1025\" is not ADDR:PORT",
    ),
    (
        "[management]
listen = \"::1:1025\"",
        2,
        10,
        "ADDR:PORT",
    ),
    (
        "[management]
listen = \"box:1025\"",
        2,
        10,
        "ADDR:PORT",
    ),
    (
        "[management]
listen = \"0.0.0.0:0\"",
        2,
        10,
        "port 0",
    ),
    (
        "[management]
metrics = \"0.0.0.0:65536\"",
        2,
        11,
        "metrics",
    ),
    ("management = 1", 1, 14, "invalid type"),
    // unikernels
    (
        "[[unikernels]]
image = \"a.hvt\"",
        1,
        1,
        "unikernel without a name",
    ),
    (
        "[[unikernels]]
name = \"a\"",
        2,
        8,
        "unikernel \"a\" has no image",
    ),
    (
        "[[unikernels]]
name = \"a.b\"
image = \"a.hvt\"",
        2,
        8,
        "unikernel name \"a.b\"",
    ),
    (
        "[[unikernels]]
name = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"
image = \"a.hvt\"",
        2,
        8,
        "1 to 64",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
[[unikernels]]
name = \"a\"
image = \"b.hvt\"",
        5,
        8,
        "unikernel name \"a\" is used twice",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"../a.hvt\"",
        3,
        9,
        "is not a file name in petrel/images/",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"/boot/a.hvt\"",
        3,
        9,
        "file name",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \".hidden\"",
        3,
        9,
        "file name",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"\"",
        3,
        9,
        "file name",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
memory_mib = 0",
        4,
        14,
        "memory_mib 0 is outside 1..=65536",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
memory_mib = 65537",
        4,
        14,
        "outside",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
args = [\"x\", \"\\u0000\"]",
        4,
        14,
        "NUL",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
net = [\"\"]",
        4,
        8,
        "net \"\" is not DEV or DEV=BRIDGE",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
net = [\"=service\"]",
        4,
        8,
        "DEV=BRIDGE",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
net = [\"net:0\"]",
        4,
        8,
        "DEV=BRIDGE",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
net = [\"service=nope\"]",
        4,
        8,
        "no bridge \"nope\" in [network]",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
net = [\"service=\"]",
        4,
        8,
        "no bridge \"\"",
    ),
    (
        "[[network.bridges]]
name = \"lan\"
[[unikernels]]
name = \"a\"
image = \"a.hvt\"
net = [\"service\"]",
        6,
        8,
        "no bridge \"service\"",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
net = [\"service\", \"service=service\"]",
        4,
        19,
        "device \"service\" is attached twice",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
restart = \"on-exit\"",
        4,
        11,
        "restart \"on-exit\"",
    ),
    (
        "[[unikernels]]
name = \"a\"
image = \"a.hvt\"
priority = 2147483648",
        4,
        12,
        "priority 2147483648 is outside",
    ),
    ("unikernels = 1", 1, 14, "invalid type"),
];

#[test]
fn every_validation_error_with_its_position() {
    for &(text, line, column, needle) in INVALID {
        let err: ConfigError = match Config::parse(text) {
            Ok(p) => panic!("accepted {text:?}: {:?}", p.config),
            Err(e) => e,
        };
        assert_eq!(
            err.position,
            Some(Position { line, column }),
            "{text:?}: {err}"
        );
        assert!(err.message.contains(needle), "{text:?}: {err}");
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("line {line}, column {column}: ")),
            "{shown}"
        );
    }
}

#[test]
fn management_and_unikernels_edges() {
    // IPv6 listeners, the metrics key written empty, the longest names.
    let p = parse("[management]\nlisten = \"[::]:1025\"\nmetrics = \"\"\n");
    assert_eq!(p.config.management.listen.to_string(), "[::]:1025");
    assert_eq!(p.config.management.metrics, None);
    let deep = vec!["a"; 16].join("/");
    let p = parse(&format!("[management]\nadmin = \"{deep}\"\n"));
    assert_eq!(p.config.management.admin.as_deref(), Some(deep.as_str()));
    let long = "d".repeat(67);
    let text = format!(
        "[[unikernels]]\nname = \"{}\"\nimage = \"x.hvt\"\nnet = [\"{long}=service\"]\nmemory_mib = 65536\npriority = -2147483648\n",
        "n".repeat(64)
    );
    let p = parse(&text);
    let u = &p.config.unikernels[0];
    assert_eq!(u.net[0].device, long);
    assert_eq!(u.net[0].bridge, "service");
    assert_eq!((u.memory_mib, u.priority), (65536, i32::MIN));
    assert_eq!(p.config.unikernel(&u.name), Some(u));
    assert_eq!(p.config.unikernel("other"), None);
    assert_eq!(Config::parse(&p.config.to_toml()).unwrap().config, p.config);
    let err = Config::parse(&format!(
        "[[unikernels]]\nname = \"a\"\nimage = \"a.hvt\"\nnet = [\"{long}d=service\"]\n"
    ))
    .unwrap_err();
    assert!(err.message.contains("1 to 67"), "{err}");
    // "DEV" alone joins the bridge of its own name.
    let p = parse(
        "[[network.bridges]]\nname = \"lan\"\n[[unikernels]]\nname = \"a\"\nimage = \"a.hvt\"\nnet = [\"lan\", \"x=lan\"]\n",
    );
    assert_eq!(
        p.config.unikernels[0].net,
        [
            NetAttach {
                device: "lan".into(),
                bridge: "lan".into()
            },
            NetAttach {
                device: "x".into(),
                bridge: "lan".into()
            }
        ]
    );
    // Unknown keys inside the new tables are warnings, as everywhere.
    let p = parse(
        "[management]\nport = 1\n[[unikernels]]\nname = \"a\"\nimage = \"a.hvt\"\ncpus = [1]\n",
    );
    assert_eq!(
        p.warnings,
        vec![
            "unknown key management.port ignored".to_string(),
            "unknown key unikernels[0].cpus ignored".to_string(),
        ]
    );
}

#[test]
fn columns_count_characters() {
    let err = Config::parse("hostname = \"ü\" # ü\nhostname = \"x\"").unwrap_err();
    assert_eq!(err.position, Some(Position { line: 2, column: 1 }));
    let err =
        Config::parse("[[services]]\nname = \"a\"\ncommand = [\"/ü\", \"x\\u0000\"]").unwrap_err();
    assert_eq!(
        err.position,
        Some(Position {
            line: 3,
            column: 18
        }),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_warnings() {
    let text = r#"
frobnicate = true
[network]
vlans = [1, 2]
[[network.bridges]]
name = "service"
stp = { enabled = true }
[[network.bridges]]
name = "b2"
uplink = "none"
txqueuelen = 1
[boot]
secure = "yes"
[[services]]
name = "hello"
command = ["/bin/x"]
cpu = 2
[future]
anything = 1
"#;
    let p = parse(text);
    assert_eq!(
        p.warnings,
        // In key order (TOML tables are unordered).
        vec![
            "unknown key boot.secure ignored",
            "unknown key frobnicate ignored",
            "unknown key future ignored",
            "unknown key network.bridges[0].stp ignored",
            "unknown key network.bridges[1].txqueuelen ignored",
            "unknown key network.vlans ignored",
            "unknown key services[0].cpu ignored",
        ]
    );
    assert_eq!(p.config.network.bridges.len(), 2);
    assert_eq!(p.config.services[0].name, "hello");
}

#[test]
fn newer_version_and_no_bridges_are_warnings() {
    let p = parse("version = 2\nnew_thing = 1\n");
    assert_eq!(p.config.version, 2);
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p.warnings[0].contains("unknown key new_thing"));
    assert!(
        p.warnings[1].contains("version 2 is newer"),
        "{:?}",
        p.warnings
    );

    let p = parse("[network]\nbridges = []\n");
    assert!(p.config.network.bridges.is_empty());
    assert_eq!(
        p.warnings,
        vec!["network.bridges is empty: the device will have no network"]
    );
}

#[test]
fn round_trip() {
    let mut cases = vec![
        Config::default(),
        parse(documented_example_text()).config,
        full_config(),
        parse("version = 7\n[network]\nbridges = []\n").config,
    ];
    let mut odd = full_config();
    odd.hostname = "x".into();
    odd.services[1]
        .command
        .push("back\\slash 'single' \u{7f} \u{1b}[0m\n".into());
    odd.network.bridges[0].ipv4 = Ipv4Mode::Static {
        addr: Ipv4Addr::new(10, 1, 2, 3),
        prefix: 8,
        gateway: None,
    };
    cases.push(odd);
    for c in cases {
        let text = c.to_toml();
        let p = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(p.config, c, "{text}");
        let expect_warnings =
            usize::from(c.version > 1) + usize::from(c.network.bridges.is_empty());
        assert_eq!(p.warnings.len(), expect_warnings, "{:?}", p.warnings);
        // Writing is deterministic.
        assert_eq!(p.config.to_toml(), text);
    }
}

#[test]
fn to_toml_is_readable() {
    let text = full_config().to_toml();
    assert!(
        text.starts_with("version = 1\nhostname = \"edge-7\"\n\n[network]\n"),
        "{text}"
    );
    assert!(text.contains("\n[[network.bridges]]\nname = \"service\"\nuplink = \"enp1s0\"\nipv4 = \"192.0.2.10/24\"\ngateway = \"192.0.2.1\"\nipv6 = \"2001:db8::10/64\"\nmtu = 9000\n"), "{text}");
    assert!(text.contains("\n[[services]]\nname = \"hello\"\ncommand = [\"/bin/petrel-hvt\", \"--mem=2\", \"/boot/efi/petrel/images/hello.hvt\"]\nrestart = \"on-failure\"\n"), "{text}");
}

#[test]
fn display_forms() {
    assert_eq!(Uplink::Nic("eth0".into()).to_string(), "eth0");
    assert_eq!(Ipv4Mode::Dhcp.to_string(), "dhcp");
    assert_eq!(Ipv6Mode::None.to_string(), "none");
    assert_eq!(Restart::OnFailure.to_string(), "on-failure");
    let e = ConfigError {
        position: None,
        message: "m".into(),
    };
    assert_eq!(e.to_string(), "m");
}
