//! The unikernel's command line, Mirage style: `--ipv4=ADDR/PREFIX` and
//! `--ipv4-gateway=ADDR`, or `--help`.

use core::fmt;
use core::net::Ipv4Addr;

/// Address used when the command line has no `--ipv4=` (Mirage's default too).
pub const DEFAULT_IPV4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// Prefix length used when the command line has no `--ipv4=`.
pub const DEFAULT_PREFIX_LEN: u8 = 24;

/// What `--help` prints.
pub const USAGE: &str = "\
usage: net [--ipv4=ADDR/PREFIX] [--ipv4-gateway=ADDR] [--help]
  Answers ARP and ping and serves a small page over HTTP on TCP port 80, on the
  net device `service0`.
  --ipv4=ADDR/PREFIX    this unikernel's address (default: 10.0.0.2/24)
  --ipv4-gateway=ADDR   default route via ADDR, which must be on the link (default: none)
  --help                print this and exit 0";

/// The network configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// This unikernel's address.
    pub addr: Ipv4Addr,
    /// Prefix length of the link's network (0 to 32).
    pub prefix_len: u8,
    /// Default gateway, if any; always inside `addr/prefix_len`.
    pub gateway: Option<Ipv4Addr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_IPV4,
            prefix_len: DEFAULT_PREFIX_LEN,
            gateway: None,
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run with this configuration.
    Run(Config),
    /// Print [`USAGE`] and exit.
    Help,
}

/// Why the command line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgError<'a> {
    /// An argument that is not one of the options.
    Unknown(&'a str),
    /// `--ipv4=` with something other than a unicast `A.B.C.D/N`, `N <= 32`.
    BadIpv4(&'a str),
    /// `--ipv4-gateway=` with something other than a unicast `A.B.C.D`.
    BadGateway(&'a str),
    /// The gateway is not on the link given by `--ipv4=`.
    GatewayOffLink(Ipv4Addr),
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Unknown(a) => write!(f, "unknown argument {a:?}"),
            ArgError::BadIpv4(v) => {
                write!(
                    f,
                    "--ipv4={v:?}: want a unicast address and prefix, ADDR/0..32"
                )
            }
            ArgError::BadGateway(v) => {
                write!(f, "--ipv4-gateway={v:?}: want a unicast address A.B.C.D")
            }
            ArgError::GatewayOffLink(g) => {
                write!(f, "--ipv4-gateway={g}: not inside the --ipv4 network")
            }
        }
    }
}

/// Whether `a` can be a host's own address or a gateway.
fn is_unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || a.is_broadcast())
}

/// Parses `A.B.C.D/N`.
fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    // Only plain decimal digits: `u8::from_str` would also take a leading `+`.
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let prefix_len: u8 = prefix.parse().ok()?;
    (prefix_len <= 32 && is_unicast(addr)).then_some((addr, prefix_len))
}

/// Whether `a` and `b` share the first `prefix_len` bits.
pub fn same_network(a: Ipv4Addr, b: Ipv4Addr, prefix_len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    (a.to_bits() & mask) == (b.to_bits() & mask)
}

/// Parses the arguments (the command line split at whitespace). A later `--ipv4=`
/// overrides an earlier one; `--help` anywhere wins over everything else except an
/// argument error before it.
pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Command, ArgError<'a>> {
    let mut cfg = Config::default();
    for arg in args {
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        } else if let Some(v) = arg.strip_prefix("--ipv4=") {
            let (addr, prefix_len) = parse_cidr(v).ok_or(ArgError::BadIpv4(v))?;
            cfg.addr = addr;
            cfg.prefix_len = prefix_len;
        } else if let Some(v) = arg.strip_prefix("--ipv4-gateway=") {
            let gw: Ipv4Addr = v.parse().map_err(|_| ArgError::BadGateway(v))?;
            if !is_unicast(gw) {
                return Err(ArgError::BadGateway(v));
            }
            cfg.gateway = Some(gw);
        } else {
            return Err(ArgError::Unknown(arg));
        }
    }
    if let Some(gw) = cfg.gateway {
        if !same_network(gw, cfg.addr, cfg.prefix_len) {
            return Err(ArgError::GatewayOffLink(gw));
        }
    }
    Ok(Command::Run(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &str) -> Config {
        match parse(args.split_ascii_whitespace()) {
            Ok(Command::Run(c)) => c,
            other => panic!("{args}: {other:?}"),
        }
    }

    #[test]
    fn no_arguments_give_the_default() {
        assert_eq!(run(""), Config::default());
        assert_eq!(run("").addr, Ipv4Addr::new(10, 0, 0, 2));
        assert!(USAGE.contains("default: 10.0.0.2/24"));
    }

    #[test]
    fn ipv4_and_gateway() {
        let c = run("--ipv4=10.77.0.2/24 --ipv4-gateway=10.77.0.1");
        assert_eq!(c.addr, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(c.prefix_len, 24);
        assert_eq!(c.gateway, Some(Ipv4Addr::new(10, 77, 0, 1)));
        assert_eq!(
            run("--ipv4=1.2.3.4/24 --ipv4=192.168.1.9/32").prefix_len,
            32
        );
        assert_eq!(run("--ipv4=192.168.1.9/0").prefix_len, 0);
    }

    #[test]
    fn help_wins() {
        assert_eq!(parse(["--ipv4=1.2.3.4/8", "--help"]), Ok(Command::Help));
        assert_eq!(parse(["-h"]), Ok(Command::Help));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            "10.0.0.2",
            "10.0.0.2/",
            "10.0.0.2/33",
            "10.0.0.2/+8",
            "10.0.0.2/008",
            "10.0.0/24",
            "0.0.0.0/24",
            "224.0.0.1/4",
            "255.255.255.255/32",
            "/24",
            "",
        ] {
            let arg = format!("--ipv4={bad}");
            assert_eq!(parse([arg.as_str()]), Err(ArgError::BadIpv4(bad)), "{bad}");
        }
        assert_eq!(parse(["--ipv4"]), Err(ArgError::Unknown("--ipv4")));
        assert_eq!(parse(["x"]), Err(ArgError::Unknown("x")));
        assert_eq!(
            parse(["--ipv4-gateway=1.2.3"]),
            Err(ArgError::BadGateway("1.2.3"))
        );
        assert_eq!(
            parse(["--ipv4-gateway=0.0.0.0"]),
            Err(ArgError::BadGateway("0.0.0.0"))
        );
        assert_eq!(
            parse(["--ipv4=10.0.0.2/24", "--ipv4-gateway=10.0.1.1"]),
            Err(ArgError::GatewayOffLink(Ipv4Addr::new(10, 0, 1, 1)))
        );
    }

    #[test]
    fn networks() {
        let a = Ipv4Addr::new(10, 1, 2, 3);
        assert!(same_network(a, Ipv4Addr::new(10, 1, 2, 200), 24));
        assert!(!same_network(a, Ipv4Addr::new(10, 1, 3, 3), 24));
        assert!(same_network(a, Ipv4Addr::new(99, 9, 9, 9), 0));
        assert!(!same_network(a, Ipv4Addr::new(10, 1, 2, 4), 32));
    }

    #[test]
    fn errors_print_the_offending_value() {
        let e = ArgError::BadIpv4("x/99").to_string();
        assert!(e.contains("x/99"), "{e}");
    }
}
