use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::admission::{Admission, Refusal, peer_key};
use super::tally::{Event, Tally, thousands};
use super::{Listener, ListenerLimits, Plain};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[test]
fn a_peer_over_its_share_is_refused_until_one_of_its_connections_closes() {
    let admission = Admission::new(3, 2);
    let first = admission.admit(ip("10.0.0.1"));
    let second = admission.admit(ip("10.0.0.1"));
    assert!(first.is_ok() && second.is_ok());
    assert_eq!(
        admission.admit(ip("10.0.0.1")).err(),
        Some(Refusal::PeerLimit)
    );
    let other = admission.admit(ip("10.0.0.2"));
    assert!(other.is_ok());
    assert_eq!(
        admission.admit(ip("10.0.0.3")).err(),
        Some(Refusal::ListenerLimit),
        "the listener holds its 3"
    );
    drop(first);
    assert_eq!(admission.open(), 2);
    assert!(admission.admit(ip("10.0.0.1")).is_ok());
    drop((second, other));
    assert_eq!(admission.open_from(ip("10.0.0.1")), 0);
}

#[test]
fn an_ipv6_host_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
    assert_eq!(peer_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
    assert_eq!(
        peer_key(ip("2001:db8:1:2:aaaa::1")),
        peer_key(ip("2001:db8:1:2:ffff:1:2:3"))
    );
    assert_ne!(
        peer_key(ip("2001:db8:1:2::1")),
        peer_key(ip("2001:db8:1:3::1"))
    );
    assert_eq!(
        peer_key(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped())),
        ip("192.0.2.7")
    );
    let admission = Admission::new(10, 1);
    let _held = admission.admit(ip("2001:db8::1"));
    assert_eq!(
        admission
            .admit(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 9, 9, 9, 9)))
            .err(),
        Some(Refusal::PeerLimit)
    );
}

#[test]
fn thousands_of_refusals_make_one_line_per_peer_and_interval() {
    let tally = Tally::new("http", ListenerLimits::http(), Duration::from_secs(10));
    for _ in 0..3_912 {
        tally.record(Event::PeerLimit, ip("127.0.0.2"), None);
    }
    tally.record(
        Event::HandshakeFailed,
        ip("127.0.0.2"),
        Some("took longer than 10s".into()),
    );
    let lines = tally.take();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "refused 3,912 connections from 127.0.0.2 over the per-peer limit (64) in the last 10 s",
            "1 TLS handshakes from 127.0.0.2 failed in the last 10 s (last: took longer than 10s)",
        ]
    );
    assert!(lines[0].warn && !lines[1].warn);
    assert!(tally.take().is_empty(), "each interval counts afresh");
}

#[test]
fn many_peers_are_named_five_at_a_time_and_the_rest_summed() {
    let tally = Tally::new("api", ListenerLimits::api(), Duration::from_secs(10));
    for peer in 1..=8u8 {
        for _ in 0..peer {
            tally.record(Event::Idle, IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer)), None);
        }
    }
    let lines = tally.take();
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert!(
        lines[0]
            .text
            .starts_with("closed 8 connections from 10.0.0.8 idle for 30 s")
    );
    assert_eq!(
        lines[5].text,
        "closed 6 connections from 3 other peers idle for 30 s in the last 10 s"
    );
}

#[test]
fn counts_read_with_thousands_separators() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1_000), "1,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
}

#[test]
fn limits_that_would_close_live_connections_are_refused() {
    assert_eq!(ListenerLimits::api().check(), Ok(()));
    assert_eq!(ListenerLimits::http().check(), Ok(()));
    assert_eq!(ListenerLimits::peer().check(), Ok(()));
    let pinging_slower_than_idle = ListenerLimits {
        idle_timeout: Duration::from_secs(5),
        ..ListenerLimits::api()
    };
    let error = pinging_slower_than_idle.check().err().unwrap_or_default();
    assert!(error.contains("idleTimeout"), "{error}");
    let no_connections = ListenerLimits {
        max_connections_per_peer: 0,
        ..ListenerLimits::http()
    };
    assert!(no_connections.check().is_err());
}

fn test_limits(per_peer: usize, idle: Duration) -> ListenerLimits {
    ListenerLimits {
        max_connections: 100,
        max_connections_per_peer: per_peer,
        idle_timeout: idle,
        keepalive_interval: None,
        ..ListenerLimits::http()
    }
}

/// A plain listener on loopback whose accepted connections are each read until they fail;
/// returns its address and, per connection, how its reading ended and when.
async fn serve_plain(
    limits: ListenerLimits,
    cut: CancellationToken,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(std::io::Result<usize>, Instant)>,
) {
    let tcp = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = tcp.local_addr().expect("bound address");
    let mut listener = Listener::new("test", tcp, Plain, limits, cut);
    let (ended, ends) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut connection, _) = listener.accept().await;
            let ended = ended.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let result = loop {
                    match connection.read(&mut buf).await {
                        Ok(0) => break Ok(0),
                        Ok(_) => continue,
                        Err(e) => break Err(e),
                    }
                };
                let _ = ended.send((result, Instant::now()));
            });
        }
    });
    (address, ends)
}

async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind a loopback source");
    socket.connect(to).await.expect("connect")
}

/// Whether the server closed `stream` within `within`.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn connections_over_the_per_peer_limit_are_closed_at_accept_and_others_served() {
    let (address, _ends) = serve_plain(
        test_limits(2, Duration::from_secs(30)),
        CancellationToken::new(),
    )
    .await;
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut first = connect_from(attacker, address).await;
    let mut second = connect_from(attacker, address).await;
    let mut third = connect_from(attacker, address).await;
    assert!(
        closed_by_server(&mut third, Duration::from_secs(5)).await,
        "the third connection from one peer is closed"
    );
    assert!(!closed_by_server(&mut first, Duration::from_millis(200)).await);
    assert!(!closed_by_server(&mut second, Duration::from_millis(10)).await);
    let mut legitimate = connect_from(Ipv4Addr::LOCALHOST, address).await;
    assert!(
        !closed_by_server(&mut legitimate, Duration::from_millis(200)).await,
        "another peer is admitted"
    );
    drop(first);
    // The server learns of the close on its next read; then the place is free again.
    let mut again = None;
    for _ in 0..50 {
        let mut candidate = connect_from(attacker, address).await;
        if !closed_by_server(&mut candidate, Duration::from_millis(100)).await {
            again = Some(candidate);
            break;
        }
    }
    assert!(again.is_some(), "a closed connection gives its place back");
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout_and_a_talking_one_is_not() {
    let idle = Duration::from_millis(400);
    let (address, mut ends) = serve_plain(test_limits(10, idle), CancellationToken::new()).await;
    let opened = Instant::now();
    let mut silent = connect_from(Ipv4Addr::LOCALHOST, address).await;
    let mut talking = connect_from(Ipv4Addr::LOCALHOST, address).await;
    for _ in 0..10 {
        tokio::time::sleep(idle / 4).await;
        talking
            .write_all(b"x")
            .await
            .expect("the talking connection stays open");
    }
    let (result, ended) = ends.recv().await.expect("one connection ended");
    let error = result.expect_err("ended by an error");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
    let after = ended - opened;
    assert!(after >= idle && after < idle * 4, "closed after {after:?}");
    assert!(closed_by_server(&mut silent, Duration::from_secs(1)).await);
    assert!(
        ends.try_recv().is_err(),
        "the talking connection outlived {:?} of idle timeouts",
        idle * 10 / 4
    );
}

#[tokio::test]
async fn cutting_the_listener_fails_its_connections_at_once() {
    let cut = CancellationToken::new();
    let (address, mut ends) =
        serve_plain(test_limits(10, Duration::from_secs(30)), cut.clone()).await;
    let _client = connect_from(Ipv4Addr::LOCALHOST, address).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    cut.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(2), ends.recv()).await;
    let kind = ended
        .ok()
        .flatten()
        .and_then(|(result, _)| result.err())
        .map(|e| e.kind());
    assert_eq!(kind, Some(std::io::ErrorKind::ConnectionAborted));
}
