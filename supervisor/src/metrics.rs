//! The OpenMetrics endpoint: `GET /metrics` over plain HTTP on an optional listener.
//!
//! Off by default (`--metrics ADDR:PORT` or the config's `management.metrics`); it shows
//! names and figures only, never changes anything, and serves one connection at a time
//! with short timeouts and a bounded request, so a slow or hostile client costs little.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Sender;
use std::time::Duration;

use petrel_proto::msg::{UnikernelInfo, UnikernelState, UnikernelStats};

use crate::api::Caller;
use crate::service::{Answer, Msg, Op, ask, read_stats};

/// The largest request head read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// The socket timeout of a metrics connection.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Escapes a label value (`\`, `"`, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "# HELP {name} {help}");
}

/// Renders the exposition: per unikernel state, restarts, memory, and for running
/// tenders CPU time, resident memory and network counters; ends with `# EOF`.
pub fn render(infos: &[UnikernelInfo], stats: &[UnikernelStats]) -> String {
    let mut out = String::new();
    let state = |s: &UnikernelState| match s {
        UnikernelState::Starting => "starting",
        UnikernelState::Running => "running",
        UnikernelState::Backoff { .. } => "backoff",
        UnikernelState::Stopped => "stopped",
    };
    family(
        &mut out,
        "petrel_unikernels",
        "gauge",
        "Unikernels by state.",
    );
    for s in ["starting", "running", "backoff", "stopped"] {
        let n = infos.iter().filter(|i| state(&i.state) == s).count();
        let _ = writeln!(out, "petrel_unikernels{{state=\"{s}\"}} {n}");
    }
    family(
        &mut out,
        "petrel_unikernel_running",
        "gauge",
        "1 while the unikernel's tender runs.",
    );
    for i in infos {
        let up = u8::from(matches!(i.state, UnikernelState::Running));
        let _ = writeln!(
            out,
            "petrel_unikernel_running{{name=\"{}\"}} {up}",
            label(&i.name.to_string())
        );
    }
    family(
        &mut out,
        "petrel_unikernel_restarts",
        "counter",
        "Restarts by the restart policy.",
    );
    for i in infos {
        let _ = writeln!(
            out,
            "petrel_unikernel_restarts_total{{name=\"{}\"}} {}",
            label(&i.name.to_string()),
            i.restart_count
        );
    }
    family(
        &mut out,
        "petrel_unikernel_memory_bytes",
        "gauge",
        "Guest memory configured.",
    );
    for i in infos {
        let _ = writeln!(
            out,
            "petrel_unikernel_memory_bytes{{name=\"{}\"}} {}",
            label(&i.name.to_string()),
            u64::from(i.memory_mib) << 20
        );
    }
    family(
        &mut out,
        "petrel_tender_cpu_seconds",
        "counter",
        "CPU time of the tender process.",
    );
    for s in stats {
        let n = label(&s.name.to_string());
        for (mode, ms) in [("user", s.cpu_user_ms), ("system", s.cpu_system_ms)] {
            let _ = writeln!(
                out,
                "petrel_tender_cpu_seconds_total{{name=\"{n}\",mode=\"{mode}\"}} {}.{:03}",
                ms / 1000,
                ms % 1000
            );
        }
    }
    family(
        &mut out,
        "petrel_tender_resident_bytes",
        "gauge",
        "Resident memory of the tender process.",
    );
    for s in stats {
        let _ = writeln!(
            out,
            "petrel_tender_resident_bytes{{name=\"{}\"}} {}",
            label(&s.name.to_string()),
            s.rss_bytes
        );
    }
    family(
        &mut out,
        "petrel_tender_uptime_seconds",
        "gauge",
        "Time since the current tender started.",
    );
    for s in stats {
        let _ = writeln!(
            out,
            "petrel_tender_uptime_seconds{{name=\"{}\"}} {}.{:03}",
            label(&s.name.to_string()),
            s.uptime_ms / 1000,
            s.uptime_ms % 1000
        );
    }
    type Pick = fn(&petrel_proto::msg::NetStats) -> u64;
    let nets: [(&str, &str, Pick); 5] = [
        (
            "petrel_net_receive_bytes",
            "Bytes received by the guest.",
            |n| n.rx_bytes,
        ),
        (
            "petrel_net_receive_packets",
            "Packets received by the guest.",
            |n| n.rx_packets,
        ),
        (
            "petrel_net_transmit_bytes",
            "Bytes sent by the guest.",
            |n| n.tx_bytes,
        ),
        (
            "petrel_net_transmit_packets",
            "Packets sent by the guest.",
            |n| n.tx_packets,
        ),
        (
            "petrel_net_dropped_packets",
            "Packets dropped, both ways.",
            |n| n.dropped_packets,
        ),
    ];
    for (name, help, pick) in nets {
        family(&mut out, name, "counter", help);
        for s in stats {
            for n in &s.nets {
                let _ = writeln!(
                    out,
                    "{name}_total{{name=\"{}\",device=\"{}\"}} {}",
                    label(&s.name.to_string()),
                    label(&n.name),
                    pick(n)
                );
            }
        }
    }
    if let Ok(me) = crate::stats::process(std::process::id()) {
        family(
            &mut out,
            "petreld_resident_bytes",
            "gauge",
            "Resident memory of petreld.",
        );
        let _ = writeln!(out, "petreld_resident_bytes {}", me.rss_bytes);
    }
    out.push_str("# EOF\n");
    out
}

/// Binds `addr` and serves `GET /metrics` on a thread; returns the bound address.
pub fn serve(addr: SocketAddr, tx: Sender<Msg>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = handle(stream, &tx) {
                            log::debug!("metrics connection: {e}");
                        }
                    }
                    Err(e) => log::debug!("metrics accept: {e}"),
                }
            }
        })?;
    Ok(bound)
}

/// Reads the request head (bounded); `None` when it never ends within the cap.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST_BYTES {
            return Ok(None);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    Ok(Some(head))
}

fn handle(mut stream: TcpStream, tx: &Sender<Msg>) -> io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let Some(head) = read_head(&mut stream)? else {
        respond(
            &mut stream,
            "431 Request Header Fields Too Large",
            "text/plain",
            "too large\n",
        )?;
        // Read (a bounded amount of) what is still coming, so closing sends FIN rather
        // than a reset that could destroy the reply in flight.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = io::copy(&mut (&stream).take(64 * 1024), &mut io::sink());
        return Ok(());
    };
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        );
    }
    if target != "/metrics" {
        return respond(&mut stream, "404 Not Found", "text/plain", "see /metrics\n");
    }
    match ask(tx, &Caller::Local, Op::Metrics) {
        Ok(Answer::Metrics(infos, targets)) => {
            let stats: Vec<UnikernelStats> = targets.iter().map(read_stats).collect();
            respond(&mut stream, "200 OK", CONTENT_TYPE, &render(&infos, &stats))
        }
        Ok(_) | Err(_) => respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            "petreld is busy or stopping\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_proto::msg::{NetStats, RestartPolicy, Sha256Digest};

    #[test]
    fn renders_families_and_eof() {
        let name: petrel_proto::name::FullName = "ops:web".parse().expect("name");
        let info = UnikernelInfo {
            name: name.clone(),
            state: UnikernelState::Running,
            pid: Some(7),
            uptime_ms: Some(1500),
            memory_mib: 32,
            cpus: 1,
            cpu_affinity: vec![],
            priority: 0,
            devices: vec![],
            blocks: vec![],
            image_sha256: Sha256Digest([0; 32]),
            args: vec![],
            restart: RestartPolicy::Always,
            restart_count: 2,
            last_exit: None,
        };
        let stats = UnikernelStats {
            name,
            cpu_user_ms: 1234,
            cpu_system_ms: 5,
            rss_bytes: 4096,
            uptime_ms: 1500,
            nets: vec![NetStats {
                name: "service".into(),
                rx_bytes: 10,
                rx_packets: 1,
                tx_bytes: 20,
                tx_packets: 2,
                dropped_packets: 0,
            }],
        };
        let text = render(&[info], &[stats]);
        assert!(
            text.contains("petrel_unikernels{state=\"running\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("petrel_unikernel_restarts_total{name=\"ops:web\"} 2\n"));
        assert!(
            text.contains(
                "petrel_tender_cpu_seconds_total{name=\"ops:web\",mode=\"user\"} 1.234\n"
            )
        );
        assert!(
            text.contains(
                "petrel_net_transmit_bytes_total{name=\"ops:web\",device=\"service\"} 20\n"
            )
        );
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
