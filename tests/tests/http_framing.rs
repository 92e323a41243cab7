//! Scenario: requests built as a smuggler or a careless peer would, through http_proxy to an
//! origin that records what reached it. The framing the origin sees is the framing the proxy
//! relayed, whatever the client listed in `Connection:` or wrote twice; an origin that answers
//! before reading an upload is heard at once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use g3proxy_tests::{Group, RecordingOrigin};

fn exchange(proxy: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn framing_headers_cannot_be_removed_through_connection() {
    let origin = RecordingOrigin::start(OK, true);
    let mut group = Group::new("basic");
    group.start();
    let smuggled = "GET /admin HTTP/1.1\r\nHost: internal\r\n\r\n";
    let answer = exchange(
        group.http_proxy(),
        format!(
            "POST http://{}/ HTTP/1.1\r\nHost: elsewhere\r\nConnection: Content-Length, Host, close\r\nContent-Length: {}\r\n\r\n{smuggled}",
            origin.addr,
            smuggled.len()
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = origin.next_request();
    assert!(
        seen.contains(&format!("\r\nContent-Length: {}\r\n", smuggled.len()))
            && seen.contains(&format!("\r\nHost: {}\r\n", origin.addr))
            && !seen.contains("elsewhere"),
        "the origin must read the body as a body: {seen:?}"
    );
    assert!(seen.ends_with(smuggled));
}

#[test]
fn ambiguous_requests_are_refused_or_normalized() {
    let origin = RecordingOrigin::start(OK, true);
    let mut group = Group::new("basic");
    group.start();
    // Refused at the head: nothing is listening at the target, so one let through would get
    // 521 instead. (A bare LF in a chunk extension is refused by the body relay; proto tests.)
    let target = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for refused in [
        format!("GET http://{target}/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        format!(
            "POST http://{target}/ HTTP/1.1\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc"
        ),
        format!("POST http://{target}/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ] {
        let answer = exchange(group.http_proxy(), refused.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{refused:?} got {answer:?}"
        );
    }
    let answer = exchange(
        group.http_proxy(),
        format!(
            "POST http://{}/ HTTP/1.1\r\nConnection: close\r\nContent-Length: 3, 3\r\n\r\nabc",
            origin.addr
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = origin.next_request();
    assert!(seen.contains("\r\nContent-Length: 3\r\n"), "{seen:?}");
}

#[test]
fn responses_with_both_framings_reach_the_client_chunked_only() {
    let origin = RecordingOrigin::start(
        b"HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        true,
    );
    let mut group = Group::new("basic");
    group.start();
    let answer = exchange(
        group.http_proxy(),
        format!(
            "GET http://{}/ HTTP/1.1\r\nConnection: close\r\n\r\n",
            origin.addr
        )
        .as_bytes(),
    );
    assert!(
        answer.contains("\r\nTransfer-Encoding: chunked\r\n") && !answer.contains("Content-Length"),
        "{answer:?}"
    );
    assert!(answer.ends_with("2\r\nok\r\n0\r\n\r\n"), "{answer:?}");
}

#[test]
fn an_early_answer_reaches_the_client_during_its_upload() {
    let origin = RecordingOrigin::start(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n",
        false,
    );
    let mut group = Group::new("basic");
    group.start();
    let mut stream = TcpStream::connect(group.http_proxy()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // Announce 1 GiB, send a little: the origin refuses without reading.
    stream
        .write_all(
            format!(
                "PUT http://{}/big HTTP/1.1\r\nContent-Length: 1073741824\r\n\r\n",
                origin.addr
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(&[b'x'; 64 * 1024]).unwrap();
    let mut answer = [0u8; 256];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("Connection: close"), "{answer}");
}

#[test]
fn an_early_answer_from_an_origin_that_closes_still_reaches_the_client() {
    // The origin reads the head, answers 413 and closes without reading the body.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ =
                stream.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let mut group = Group::new("basic");
    group.start();
    let mut stream = TcpStream::connect(group.http_proxy()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(
            format!("PUT http://{origin}/big HTTP/1.1\r\nContent-Length: 8388608\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    // Keep uploading while the origin is gone; the proxy may stop reading at any point.
    let mut writer = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let chunk = [b'x'; 64 * 1024];
        for _ in 0..128 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut answer = [0u8; 256];
    let n = stream.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}
