//! A tiny HTTP/1.0 responder: find the end of a request head, read its request line, pick
//! one of a few canned responses. Every response closes the connection.

use core::fmt;

/// The page served at `/`.
pub const BODY: &str = "Hello from a Petrel unikernel\n";

/// Most bytes of a request head the server keeps; a longer head gets 400.
pub const REQUEST_HEAD_MAX: usize = 1024;

/// Defines a canned response, and optionally its head-only variant (for HEAD requests).
macro_rules! canned {
    ($full:ident, $head:ident, $status:literal, $extra:literal, $len:literal, $body:literal) => {
        canned!($full, $status, $extra, $len, $body);
        const $head: &[u8] = concat!(
            "HTTP/1.0 ",
            $status,
            "\r\nServer: Petrel\r\nContent-Type: text/plain\r\nContent-Length: ",
            $len,
            "\r\n",
            $extra,
            "Connection: close\r\n\r\n"
        )
        .as_bytes();
    };
    ($full:ident, $status:literal, $extra:literal, $len:literal, $body:literal) => {
        const $full: &[u8] = concat!(
            "HTTP/1.0 ",
            $status,
            "\r\nServer: Petrel\r\nContent-Type: text/plain\r\nContent-Length: ",
            $len,
            "\r\n",
            $extra,
            "Connection: close\r\n\r\n",
            $body
        )
        .as_bytes();
    };
}

canned!(
    OK,
    OK_HEAD,
    "200 OK",
    "",
    "30",
    "Hello from a Petrel unikernel\n"
);
canned!(
    NOT_FOUND,
    NOT_FOUND_HEAD,
    "404 Not Found",
    "",
    "10",
    "Not found\n"
);
canned!(
    NOT_ALLOWED,
    NOT_ALLOWED_HEAD,
    "405 Method Not Allowed",
    "Allow: GET, HEAD\r\n",
    "19",
    "Method not allowed\n"
);
// A request that cannot be read has no method, so no head-only variant.
canned!(BAD, "400 Bad Request", "", "12", "Bad request\n");

/// Every response with a body, for the size check below and the tests.
const ALL: [&[u8]; 4] = [OK, NOT_FOUND, NOT_ALLOWED, BAD];

/// Length of the longest response; a connection's transmit buffer must hold it.
pub const RESPONSE_MAX: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < ALL.len() {
        if ALL[i].len() > max {
            max = ALL[i].len();
        }
        i += 1;
    }
    max
};

/// Where the head of a request ends: the index just past its blank line (`\r\n\r\n`,
/// or a bare `\n\n`, which some clients send), if it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut newline_at: Option<usize> = None;
    for (i, &c) in buf.iter().enumerate() {
        if c == b'\n' {
            if let Some(prev) = newline_at {
                // Only a `\r` may sit between the two newlines.
                if i == prev + 1 || (i == prev + 2 && buf[prev + 1] == b'\r') {
                    return Some(i + 1);
                }
            }
            newline_at = Some(i);
        }
    }
    None
}

/// What to send back for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    /// The status code, for the log line.
    pub status: u16,
    /// The whole response (head and body).
    pub bytes: &'static [u8],
    /// The request's method (empty if the request line was unreadable).
    pub method: &'a [u8],
    /// The request's target (empty if the request line was unreadable).
    pub target: &'a [u8],
}

/// The three parts of a request line `METHOD SP TARGET SP HTTP/x.y`.
fn request_line(head: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = match head.iter().position(|&c| c == b'\n') {
        Some(end) => &head[..end],
        None => head,
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&c| c == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let method_ok = !method.is_empty() && method.iter().all(u8::is_ascii_uppercase);
    let target_ok = !target.is_empty() && target.iter().all(u8::is_ascii_graphic);
    let version_ok = version.starts_with(b"HTTP/");
    (parts.next().is_none() && method_ok && target_ok && version_ok).then_some((method, target))
}

/// Chooses the response to a request whose head (or everything received, if the client
/// stopped sending early) is `head`. `GET` and `HEAD` of `/` or `/index.html` get the
/// page; other targets 404; other methods 405; anything unreadable 400.
pub fn respond(head: &[u8]) -> Response<'_> {
    let Some((method, target)) = request_line(head) else {
        return bad_request();
    };
    let is_head = method == b"HEAD";
    let (status, full, head_only) = if method != b"GET" && !is_head {
        (405, NOT_ALLOWED, NOT_ALLOWED_HEAD)
    } else if target == b"/" || target == b"/index.html" {
        (200, OK, OK_HEAD)
    } else {
        (404, NOT_FOUND, NOT_FOUND_HEAD)
    };
    Response {
        status,
        bytes: if is_head { head_only } else { full },
        method,
        target,
    }
}

/// The 400 response, for a request that cannot be read.
fn bad_request() -> Response<'static> {
    Response {
        status: 400,
        bytes: BAD,
        method: b"",
        target: b"",
    }
}

/// Decides whether `received`, everything a client has sent so far (at most
/// [`REQUEST_HEAD_MAX`] bytes), can be answered yet: once its head is complete, once
/// the buffer is full without one (400), or once the client has stopped sending
/// (`peer_closed`) after sending something. `None` means wait for more.
pub fn reply_for(received: &[u8], peer_closed: bool) -> Option<Response<'_>> {
    match head_end(received) {
        Some(end) => Some(respond(&received[..end])),
        None if received.len() >= REQUEST_HEAD_MAX => Some(bad_request()),
        None if peer_closed && !received.is_empty() => Some(respond(received)),
        None => None,
    }
}

/// Shows untrusted bytes in a log line: printable ASCII as is, anything else as `?`, at
/// most 64 characters followed by `...`.
pub struct Printable<'a>(pub &'a [u8]);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 64;
        for &c in self.0.iter().take(MAX) {
            let c = if c.is_ascii_graphic() || c == b' ' {
                char::from(c)
            } else {
                '?'
            };
            fmt::Write::write_char(f, c)?;
        }
        if self.0.len() > MAX {
            f.write_str("...")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &[u8]) -> &str {
        core::str::from_utf8(b).unwrap()
    }

    #[test]
    fn content_length_matches_every_body() {
        for full in ALL {
            let end = head_end(full).unwrap();
            let head = &full[..end];
            let body_len = full.len() - end;
            let want = format!("Content-Length: {body_len}\r\n");
            assert!(text(head).contains(&want), "{}", text(head));
        }
        for (full, head) in [(OK, OK_HEAD), (NOT_FOUND, NOT_FOUND_HEAD)] {
            assert_eq!(&full[..head.len()], head);
            assert_eq!(head_end(full), Some(head.len()));
        }
        assert!(NOT_ALLOWED.starts_with(NOT_ALLOWED_HEAD));
        assert!(text(OK).ends_with(BODY));
        assert_eq!(RESPONSE_MAX, NOT_ALLOWED.len());
    }

    #[test]
    fn head_end_needs_a_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n\r\n"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.0\r\nHost: x\r\n\r\nrest"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.0\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n\r"), None);
        assert_eq!(head_end(b"\n\n"), Some(2));
        assert_eq!(head_end(b""), None);
        assert_eq!(head_end(b"a\nb\rc\n"), None);
    }

    #[test]
    fn responses() {
        let r = respond(b"GET / HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n");
        assert_eq!((r.status, r.bytes), (200, OK));
        assert_eq!((r.method, r.target), (&b"GET"[..], &b"/"[..]));
        assert_eq!(respond(b"GET /index.html HTTP/1.0\r\n\r\n").status, 200);
        let r = respond(b"HEAD / HTTP/1.0\r\n\r\n");
        assert_eq!((r.status, r.bytes), (200, OK_HEAD));
        let r = respond(b"GET /nope HTTP/1.0\r\n\r\n");
        assert_eq!((r.status, r.bytes), (404, NOT_FOUND));
        let r = respond(b"POST / HTTP/1.0\r\n\r\n");
        assert_eq!((r.status, r.bytes), (405, NOT_ALLOWED));
        // A request line without its head's end (client half-closed early).
        assert_eq!(respond(b"GET / HTTP/1.0").status, 200);
    }

    #[test]
    fn garbage_gets_400() {
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.0 x\r\n\r\n",
            b"get / HTTP/1.0\r\n\r\n",
            b"GET / FTP/1.0\r\n\r\n",
            b"GET /\xff HTTP/1.0\r\n\r\n",
            b"\xff\xfe\x00",
        ] {
            let r = respond(bad);
            assert_eq!((r.status, r.bytes), (400, BAD), "{bad:?}");
        }
    }

    #[test]
    fn reply_waits_for_the_head_or_the_end() {
        assert_eq!(reply_for(b"GET / HTTP/1.0\r\n", false), None);
        assert_eq!(reply_for(b"", true), None);
        assert_eq!(reply_for(b"GET / HTTP/1.0\r\n", true).unwrap().status, 200);
        let r = reply_for(b"GET /x HTTP/1.0\r\n\r\nbody", false).unwrap();
        assert_eq!((r.status, r.target), (404, &b"/x"[..]));
        // A full buffer without a blank line is refused, even with a fine request line.
        let mut big = b"GET / HTTP/1.0\r\nX: ".to_vec();
        big.resize(REQUEST_HEAD_MAX, b'a');
        assert_eq!(reply_for(&big, false).unwrap().status, 400);
        assert_eq!(reply_for(&big[..REQUEST_HEAD_MAX - 1], false), None);
    }

    #[test]
    fn printable_hides_control_bytes_and_truncates() {
        assert_eq!(Printable(b"/a b\x1b[2J").to_string(), "/a b?[2J");
        let long = [b'x'; 70];
        assert_eq!(
            Printable(&long).to_string(),
            format!("{}...", "x".repeat(64))
        );
    }
}
