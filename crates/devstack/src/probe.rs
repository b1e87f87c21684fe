//! Tiny, dependency-free health probes: TCP port use, a Kafka `ApiVersions` round trip
//! and an HTTP/1.1 request over a plain `TcpStream`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Whether something listens on `addr`: a connect succeeds, or binding it fails with
/// "address in use" (which also catches listeners on the wildcard address).
pub fn port_in_use(addr: SocketAddr) -> bool {
    if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
        return true;
    }
    matches!(TcpListener::bind(addr), Err(e) if e.kind() == io::ErrorKind::AddrInUse)
}

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Encodes an `ApiVersions` v0 request (api key 18, request header v1, empty body).
fn api_versions_request(correlation_id: i32) -> Vec<u8> {
    const CLIENT_ID: &[u8] = b"surgeflow-devstack";
    let mut body = Vec::with_capacity(32);
    body.extend_from_slice(&18i16.to_be_bytes()); // api_key = ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // api_version = 0
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    body.extend_from_slice(CLIENT_ID);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Decodes an `ApiVersions` v0 response body (after the size prefix):
/// `correlation_id`, `error_code`, then `[api_key, min_version, max_version]`.
/// Returns `(error_code, number of APIs)`.
fn parse_api_versions_response(body: &[u8], correlation_id: i32) -> io::Result<(i16, usize)> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("ApiVersions response: {what}"),
        )
    };
    if body.len() < 6 {
        return Err(bad("too short"));
    }
    let cid = i32::from_be_bytes(body[0..4].try_into().expect("4 bytes"));
    if cid != correlation_id {
        return Err(bad("correlation id mismatch"));
    }
    let error_code = i16::from_be_bytes(body[4..6].try_into().expect("2 bytes"));
    let count = body
        .get(6..10)
        .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
        .unwrap_or(0);
    Ok((error_code, usize::try_from(count).unwrap_or(0)))
}

/// Sends a Kafka `ApiVersions` v0 request to `addr` and reads the answer.
///
/// A broker in KRaft mode only processes requests on its client listener once it has
/// caught up with the metadata log and been unfenced, so an answer means "ready".
/// Returns the number of APIs the broker advertises.
///
/// # Errors
///
/// Connection, timeout or protocol errors; a non-zero Kafka error code.
pub fn kafka_api_versions(addr: SocketAddr, timeout: Duration) -> io::Result<usize> {
    const CORRELATION_ID: i32 = 0x5f10_0001;
    let mut stream = connect(addr, timeout)?;
    stream.write_all(&api_versions_request(CORRELATION_ID))?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .ok()
        .filter(|&s| s <= 1 << 20)
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "bad ApiVersions response size")
        })?;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body)?;
    match parse_api_versions_response(&body, CORRELATION_ID)? {
        (0, apis) => Ok(apis),
        (code, _) => Err(io::Error::other(format!("ApiVersions error code {code}"))),
    }
}

/// Whether a Kafka broker answers on `addr`.
pub fn kafka_answers(addr: SocketAddr, timeout: Duration) -> bool {
    kafka_api_versions(addr, timeout).is_ok()
}

/// A minimal HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The (de-chunked) body as text.
    pub body: String,
}

/// Performs one HTTP/1.1 request (`Connection: close`) and reads the whole response.
/// A `body` is sent as `application/vnd.schemaregistry.v1+json`.
///
/// # Errors
///
/// Connection, timeout or parse errors.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let mut stream = connect(addr, timeout)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

/// Parses a complete HTTP/1.x response (identity or chunked body).
pub fn parse_http_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("HTTP response: {what}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(bad("not HTTP/1.x"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let payload = &raw[split + 4..];
    let body = if chunked {
        dechunk(payload).ok_or_else(|| bad("bad chunked body"))?
    } else {
        payload.to_vec()
    };
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Whether the registry's Confluent-compatible API answers `GET /subjects` with 200.
pub fn registry_answers(addr: SocketAddr, timeout: Duration) -> bool {
    http_request(
        addr,
        "GET",
        &format!("{}/subjects", crate::CCOMPAT_PATH),
        None,
        timeout,
    )
    .is_ok_and(|r| r.status == 200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn port_in_use_detects_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(port_in_use(addr));
        drop(listener);
        assert!(!port_in_use(addr));
    }

    #[test]
    fn api_versions_request_layout() {
        let frame = api_versions_request(7);
        let size = i32::from_be_bytes(frame[0..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        assert_eq!(&frame[4..6], &18i16.to_be_bytes());
        assert_eq!(&frame[6..8], &0i16.to_be_bytes());
        assert_eq!(&frame[8..12], &7i32.to_be_bytes());
        assert_eq!(&frame[14..], b"surgeflow-devstack");
    }

    #[test]
    fn api_versions_response_parsing() {
        let mut body = 7i32.to_be_bytes().to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes());
        assert_eq!(parse_api_versions_response(&body, 7).unwrap(), (0, 2));
        assert!(parse_api_versions_response(&body, 8).is_err());
        assert!(parse_api_versions_response(&body[..3], 7).is_err());
    }

    #[test]
    fn fake_broker_round_trip() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut size = [0u8; 4];
            s.read_exact(&mut size).unwrap();
            let mut req = vec![0u8; i32::from_be_bytes(size) as usize];
            s.read_exact(&mut req).unwrap();
            let mut body = req[4..8].to_vec(); // echo the correlation id
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&1i32.to_be_bytes());
            body.extend_from_slice(&[0, 18, 0, 0, 0, 4]);
            let mut frame = (body.len() as i32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            s.write_all(&frame).unwrap();
        });
        assert_eq!(kafka_api_versions(addr, Duration::from_secs(5)).unwrap(), 1);
        server.join().unwrap();
    }

    #[test]
    fn silent_port_is_not_kafka() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(!kafka_answers(addr, Duration::from_millis(300)));
    }

    #[test]
    fn http_parsing() {
        let r = parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]").unwrap();
        assert_eq!(
            r,
            HttpResponse {
                status: 200,
                body: "[]".into()
            }
        );
        let r = parse_http_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            r,
            HttpResponse {
                status: 404,
                body: "Wikipedia".into()
            }
        );
        assert!(parse_http_response(b"garbage").is_err());
    }

    #[test]
    fn fake_registry_round_trip() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                .unwrap();
            req
        });
        assert!(registry_answers(addr, Duration::from_secs(5)));
        let req = server.join().unwrap();
        assert!(
            req.starts_with("GET /apis/ccompat/v7/subjects HTTP/1.1\r\n"),
            "{req}"
        );
    }
}
