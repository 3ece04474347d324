//! Sample messages: at least one of every variant of every enum.
#![allow(dead_code, clippy::unwrap_used)]

use petrel_proto::*;

pub fn full(s: &str) -> FullName {
    s.parse().unwrap()
}

pub fn ident(s: &str) -> Identity {
    s.parse().unwrap()
}

pub fn uname(s: &str) -> UnikernelName {
    s.parse().unwrap()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn req(id: u32, command: Command) -> Message {
    Message::Request(Request {
        id: RequestId(id),
        command,
    })
}

pub fn reply(id: u32, body: ReplyBody) -> Message {
    Message::Reply(Reply {
        id: RequestId(id),
        body,
    })
}

pub fn stream(id: u32, chunk: Chunk) -> Message {
    Message::Stream(Stream {
        id: RequestId(id),
        chunk,
    })
}

pub fn digest() -> Sha256Digest {
    Sha256Digest::of(b"abc")
}

pub fn policy() -> Policy {
    Policy {
        max_unikernels: 10,
        memory_mib: 4096,
        block_bytes: 1 << 30,
        bridges: vec!["service".into(), "uplink".into()],
        cpus: vec![0, 1],
    }
}

pub fn create_spec(image: ImageSource, restart: RestartPolicy) -> Box<CreateSpec> {
    Box::new(CreateSpec {
        name: full("ops/alice:web"),
        image,
        args: vec!["--port=80".into()],
        memory_mib: 64,
        cpus: 1,
        devices: vec![NetDevice {
            name: "service".into(),
            bridge: "service".into(),
        }],
        blocks: vec![BlockAttach {
            name: "storage".into(),
            device: uname("disk0"),
        }],
        restart,
        priority: -5,
        cpu_affinity: vec![1],
    })
}

pub fn info(state: UnikernelState, last_exit: Option<LastExit>) -> UnikernelInfo {
    UnikernelInfo {
        name: full("ops/alice:web"),
        state,
        pid: Some(4242),
        uptime_ms: Some(60_000),
        memory_mib: 64,
        cpus: 1,
        cpu_affinity: vec![],
        priority: 0,
        devices: vec![NetDeviceInfo {
            name: "service".into(),
            bridge: "service".into(),
            mac: [0x02, 0x00, 0x00, 0x12, 0x34, 0x56],
        }],
        blocks: vec![],
        image_sha256: digest(),
        args: vec![],
        restart: RestartPolicy::Always,
        restart_count: 3,
        last_exit,
    }
}

pub fn error(kind: ErrorKind) -> Error {
    Error {
        kind,
        message: "no".into(),
    }
}

pub const ERROR_KINDS: [ErrorKind; 13] = [
    ErrorKind::Other,
    ErrorKind::VersionMismatch,
    ErrorKind::Malformed,
    ErrorKind::Unsupported,
    ErrorKind::BadRequest,
    ErrorKind::PermissionDenied,
    ErrorKind::QuotaExceeded,
    ErrorKind::NotFound,
    ErrorKind::AlreadyExists,
    ErrorKind::Busy,
    ErrorKind::ManifestMismatch,
    ErrorKind::DigestMismatch,
    ErrorKind::Internal,
];

/// Every variant of every enum, at least once.
pub fn every_message() -> Vec<Message> {
    let upload = ImageSource::Upload {
        size_bytes: 1 << 20,
        sha256: digest(),
    };
    let builder = ImageSource::Builder {
        job: "job-7".into(),
        sha256: digest(),
    };
    let mut out = vec![
        Message::Hello(Hello::new("petrelctl 0.1.0")),
        req(1, Command::Info { name: None }),
        req(
            2,
            Command::Info {
                name: Some(full("ops:web")),
            },
        ),
        req(
            3,
            Command::Create(create_spec(upload, RestartPolicy::Never)),
        ),
        req(
            4,
            Command::Create(create_spec(builder.clone(), RestartPolicy::Always)),
        ),
        req(
            5,
            Command::Create(create_spec(
                builder,
                RestartPolicy::OnExit(vec![1, -1, 255]),
            )),
        ),
        req(
            6,
            Command::Destroy {
                name: full("ops:web"),
            },
        ),
        req(
            7,
            Command::Restart {
                name: full("ops:web"),
                args: None,
            },
        ),
        req(
            8,
            Command::Restart {
                name: full("ops:web"),
                args: Some(vec!["a".into()]),
            },
        ),
        req(9, Command::Stats { name: None }),
        req(
            10,
            Command::Block(BlockCommand::Create {
                name: full("ops:d"),
                size_bytes: 1 << 20,
                sector_size: 512,
            }),
        ),
        req(
            11,
            Command::Block(BlockCommand::Destroy {
                name: full("ops:d"),
            }),
        ),
        req(12, Command::Block(BlockCommand::List { owner: None })),
        req(
            13,
            Command::Block(BlockCommand::List {
                owner: Some(ident("ops")),
            }),
        ),
        req(
            14,
            Command::Block(BlockCommand::Upload {
                name: full("ops:d"),
                size_bytes: 3,
                sha256: digest(),
            }),
        ),
        req(
            15,
            Command::Block(BlockCommand::Download {
                name: full("ops:d"),
            }),
        ),
        req(
            16,
            Command::Policy(PolicyCommand::Add {
                identity: ident("ops/alice"),
                policy: policy(),
            }),
        ),
        req(
            17,
            Command::Policy(PolicyCommand::Remove {
                identity: ident("ops/alice"),
            }),
        ),
        req(18, Command::Policy(PolicyCommand::List { identity: None })),
        req(19, Command::Reboot),
        req(20, Command::Poweroff),
        req(23, Command::FactoryReset),
        req(
            24,
            Command::TrustRotate {
                anchor_der: vec![0x30, 0x82],
            },
        ),
        req(25, Command::Cancel { id: RequestId(3) }),
        reply(1, ReplyBody::Ok),
        reply(2, ReplyBody::Proceed),
        reply(
            3,
            ReplyBody::Unikernel(Box::new(info(UnikernelState::Running, None))),
        ),
        reply(
            4,
            ReplyBody::Info(vec![
                info(UnikernelState::Starting, None),
                info(
                    UnikernelState::Backoff {
                        restart_in_ms: 2000,
                    },
                    Some(LastExit {
                        status: ExitStatus::Code(1),
                        reason: "solo5_exit(1)".into(),
                        at_unix_ms: 1_700_000_000_000,
                    }),
                ),
                info(
                    UnikernelState::Stopped,
                    Some(LastExit {
                        status: ExitStatus::Signal(9),
                        reason: "killed".into(),
                        at_unix_ms: 0,
                    }),
                ),
            ]),
        ),
        reply(
            5,
            ReplyBody::Stats(vec![UnikernelStats {
                name: full("ops:web"),
                cpu_user_ms: 1,
                cpu_system_ms: 2,
                rss_bytes: 3,
                uptime_ms: 4,
                nets: vec![NetStats {
                    name: "service".into(),
                    rx_bytes: 5,
                    rx_packets: 6,
                    tx_bytes: 7,
                    tx_packets: 8,
                    dropped_packets: 9,
                }],
            }]),
        ),
        reply(
            6,
            ReplyBody::Block(BlockInfo {
                name: full("ops:d"),
                size_bytes: 512,
                sector_size: 512,
                attached_to: None,
            }),
        ),
        reply(
            7,
            ReplyBody::Blocks(vec![BlockInfo {
                name: full("ops:d"),
                size_bytes: 4096,
                sector_size: 4096,
                attached_to: Some(full("ops:web")),
            }]),
        ),
        reply(
            8,
            ReplyBody::Policies(vec![PolicyEntry {
                identity: ident("ops"),
                policy: policy(),
            }]),
        ),
        stream(9, Chunk::Data(b"hello\n".to_vec())),
        stream(9, Chunk::Data(vec![])),
        stream(
            9,
            Chunk::End {
                total_bytes: 3,
                sha256: digest(),
            },
        ),
        stream(9, Chunk::Abort(error(ErrorKind::Internal))),
    ];
    for history in [
        ConsoleHistory::None,
        ConsoleHistory::Lines(100),
        ConsoleHistory::SinceUnixMs(1_700_000_000_000),
        ConsoleHistory::All,
    ] {
        out.push(req(
            21,
            Command::Console {
                name: full("ops/alice:web"),
                history,
                follow: true,
            },
        ));
    }
    for boot in [LogBoot::Current, LogBoot::Previous, LogBoot::FailedTrial] {
        out.push(req(22, Command::Logs { boot, lines: 50 }));
    }
    for kind in ERROR_KINDS {
        out.push(reply(10, ReplyBody::Error(error(kind))));
    }
    out
}
