//! Bytes written to a TLS or WebSocket stream reach a slow reader even when
//! the writer never flushes and only waits to read afterwards, as the
//! broker's connection loop does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Server, WAIT, tls_connect, ws_over};
use fogg_transport::test_pki::{Ca, client_config};
use fogg_transport::{Kind, Settings, Stream, TlsSettings};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Write until the socket is full (a write stays pending), report how many
/// bytes were accepted, then only read, never flush.
fn fill_then_read(mut stream: Stream) -> tokio::sync::oneshot::Receiver<usize> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let chunk = vec![7u8; 16 * 1024];
        let mut sent = 0;
        while let Ok(n) =
            tokio::time::timeout(Duration::from_millis(200), stream.write(&chunk)).await
        {
            sent += n.unwrap();
        }
        let _ = tx.send(sent);
        let mut buf = [0u8; 16];
        let _ = stream.read(&mut buf).await;
    });
    rx
}

#[tokio::test]
async fn tls_writes_reach_a_slow_reader_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let files = ca.server().write(dir.path(), "server");
    let mut server = Server::start(Settings {
        kind: Kind::Tls,
        tls: Some(TlsSettings::new(files.cert, files.key)),
        ..Settings::tcp("test")
    })
    .await;
    let mut client = tls_connect(server.addr, client_config(&ca, None))
        .await
        .unwrap();
    let (stream, _) = server.next_ok().await;
    // Nothing is read until the writer is stuck.
    let total = fill_then_read(stream).await.unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < total {
        let n = tokio::time::timeout(WAIT, client.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("stuck after {got} of {total} bytes"))
            .unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
    }
}

#[tokio::test]
async fn websocket_writes_reach_a_slow_reader_without_a_flush() {
    let mut server = Server::start(Settings {
        kind: Kind::Ws,
        ..Settings::tcp("test")
    })
    .await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut ws = ws_over(tcp, &format!("ws://{}/mqtt", server.addr), "mqtt")
        .await
        .unwrap();
    let (stream, _) = server.next_ok().await;
    let total = fill_then_read(stream).await.unwrap();
    let mut got = 0;
    while got < total {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("stuck after {got} of {total} bytes"))
        {
            Some(Ok(Message::Binary(b))) => got += b.len(),
            other => panic!("after {got} bytes: {other:?}"),
        }
    }
}
