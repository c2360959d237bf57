//! Protocol-level readiness probes: a server is ready when it answers a real
//! request over its own protocol, not merely when its port accepts a connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Service;

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Login details a probe may need (PostgreSQL's startup message names a user).
#[derive(Clone, Debug, Default)]
pub(crate) struct ProbeAuth {
    pub user: Option<String>,
    pub database: Option<String>,
}

/// One attempt: `Ok(())` when the server answered like a ready server of its kind,
/// `Err(reason)` otherwise.
pub(crate) async fn probe(
    service: Service,
    host: &str,
    port: u16,
    auth: &ProbeAuth,
) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, probe_inner(service, host, port, auth)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

async fn probe_inner(
    service: Service,
    host: &str,
    port: u16,
    auth: &ProbeAuth,
) -> Result<(), String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    match service {
        Service::Redis => redis(&mut stream).await,
        Service::Memcached => memcached(&mut stream).await,
        Service::Postgres => postgres(&mut stream, auth).await,
        Service::Mysql => mysql(&mut stream).await,
        Service::Mongodb => mongodb(&mut stream).await,
        Service::Rabbitmq => amqp(&mut stream).await,
        Service::Mosquitto => mqtt(&mut stream).await,
    }
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>, min: usize) -> Result<(), String> {
    let mut chunk = [0u8; 1024];
    while buf.len() < min {
        let n = stream.read(&mut chunk).await.map_err(io_err("read"))?;
        if n == 0 {
            return Err(format!(
                "connection closed after {} bytes: {:?}",
                buf.len(),
                String::from_utf8_lossy(buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

async fn read_line(stream: &mut TcpStream) -> Result<String, String> {
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n") {
        let want = buf.len() + 1;
        read_some(stream, &mut buf, want).await?;
        if buf.len() > 4096 {
            return Err("answer line too long".to_owned());
        }
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_owned())
}

/// `PING` answered by `+PONG` (or by an auth error: the server is up but wants a password).
async fn redis(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .write_all(b"PING\r\n")
        .await
        .map_err(io_err("write"))?;
    let line = read_line(stream).await?;
    if line == "+PONG" || line.starts_with("-NOAUTH") || line.starts_with("-WRONGPASS") {
        Ok(())
    } else {
        Err(format!("PING answered {line:?}"))
    }
}

/// `version` answered by `VERSION x.y.z`.
async fn memcached(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .write_all(b"version\r\n")
        .await
        .map_err(io_err("write"))?;
    let line = read_line(stream).await?;
    if line.starts_with("VERSION ") {
        Ok(())
    } else {
        Err(format!("version answered {line:?}"))
    }
}

/// A protocol 3.0 startup message: a ready server asks for authentication (`R`) or
/// refuses the login for a reason other than "starting up" / "shutting down".
async fn postgres(stream: &mut TcpStream, auth: &ProbeAuth) -> Result<(), String> {
    let user = auth.user.as_deref().unwrap_or("postgres");
    let database = auth.database.as_deref().unwrap_or(user);
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = Vec::with_capacity(body.len() + 4);
    msg.extend_from_slice(
        &u32::try_from(body.len() + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    msg.extend_from_slice(&body);
    stream.write_all(&msg).await.map_err(io_err("write"))?;
    let mut buf = Vec::new();
    read_some(stream, &mut buf, 5).await?;
    match buf[0] {
        b'R' => Ok(()),
        b'E' => {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            read_some(stream, &mut buf, (len + 1).min(8192)).await?;
            let fields = &buf[5..buf.len().min(len + 1)];
            let mut code = String::new();
            let mut message = String::new();
            for field in fields.split(|b| *b == 0) {
                match field.split_first() {
                    Some((b'C', v)) => code = String::from_utf8_lossy(v).into_owned(),
                    Some((b'M', v)) => message = String::from_utf8_lossy(v).into_owned(),
                    _ => {}
                }
            }
            // 57P03: cannot connect now (starting up / shutting down); 57P01: admin shutdown.
            if code.starts_with("57P") {
                Err(format!("server not ready: {code} {message}"))
            } else {
                Ok(())
            }
        }
        other => Err(format!("unexpected first byte {other:#04x}")),
    }
}

/// The server speaks first: a handshake packet of protocol version 10.
async fn mysql(stream: &mut TcpStream) -> Result<(), String> {
    let mut buf = Vec::new();
    read_some(stream, &mut buf, 5).await?;
    match buf[4] {
        0x0a => Ok(()),
        0xff => {
            let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
            let _ = read_some(stream, &mut buf, (len + 4).min(4096)).await;
            Err(format!(
                "server refused: {}",
                String::from_utf8_lossy(buf.get(7..).unwrap_or_default())
            ))
        }
        other => Err(format!("unexpected protocol version {other:#04x}")),
    }
}

/// `{hello: 1, $db: "admin"}` in an OP_MSG, answered by an OP_MSG.
async fn mongodb(stream: &mut TcpStream) -> Result<(), String> {
    let mut doc = Vec::new();
    doc.push(0x10); // int32
    doc.extend_from_slice(b"hello\0");
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.push(0x02); // string
    doc.extend_from_slice(b"$db\0");
    doc.extend_from_slice(&6i32.to_le_bytes());
    doc.extend_from_slice(b"admin\0");
    doc.push(0);
    let doc_len = i32::try_from(doc.len() + 4).unwrap_or(i32::MAX);
    let mut section = Vec::new();
    section.extend_from_slice(&0u32.to_le_bytes()); // flagBits
    section.push(0); // section kind 0: body
    section.extend_from_slice(&doc_len.to_le_bytes());
    section.extend_from_slice(&doc);
    let request_id: i32 = 0x0f06;
    let mut msg = Vec::new();
    msg.extend_from_slice(
        &i32::try_from(16 + section.len())
            .unwrap_or(i32::MAX)
            .to_le_bytes(),
    );
    msg.extend_from_slice(&request_id.to_le_bytes());
    msg.extend_from_slice(&0i32.to_le_bytes());
    msg.extend_from_slice(&2013i32.to_le_bytes()); // OP_MSG
    msg.extend_from_slice(&section);
    stream.write_all(&msg).await.map_err(io_err("write"))?;
    let mut buf = Vec::new();
    read_some(stream, &mut buf, 16).await?;
    let field = |i: usize| i32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let (response_to, op_code) = (field(8), field(12));
    if response_to == request_id && (op_code == 2013 || op_code == 1) {
        Ok(())
    } else {
        Err(format!(
            "unexpected reply header: responseTo={response_to} opCode={op_code}"
        ))
    }
}

/// The AMQP 0-9-1 protocol header, answered by a `connection.start` method frame.
async fn amqp(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .write_all(b"AMQP\x00\x00\x09\x01")
        .await
        .map_err(io_err("write"))?;
    let mut buf = Vec::new();
    read_some(stream, &mut buf, 11).await?;
    // frame type 1 (method), channel 0, size (4 bytes), class 10 (connection), method 10 (start)
    if buf[0] == 1 && buf[1..3] == [0, 0] && buf[7..11] == [0, 10, 0, 10] {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer {:02x?}",
            &buf[..buf.len().min(16)]
        ))
    }
}

/// An MQTT 3.1.1 CONNECT, answered by a CONNACK (any return code: the broker is up).
async fn mqtt(stream: &mut TcpStream) -> Result<(), String> {
    let client_id = b"fogg-testcontainers-probe";
    let mut body = Vec::new();
    body.extend_from_slice(&[0, 4]);
    body.extend_from_slice(b"MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(0x02); // clean session
    body.extend_from_slice(&10u16.to_be_bytes()); // keep alive
    body.extend_from_slice(&u16::try_from(client_id.len()).unwrap_or(0).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut msg = vec![0x10, u8::try_from(body.len()).unwrap_or(0)];
    msg.extend_from_slice(&body);
    stream.write_all(&msg).await.map_err(io_err("write"))?;
    let mut buf = Vec::new();
    read_some(stream, &mut buf, 4).await?;
    if buf[0] == 0x20 && buf[1] == 2 {
        let _ = stream.write_all(&[0xe0, 0]).await; // DISCONNECT
        Ok(())
    } else {
        Err(format!(
            "unexpected answer {:02x?}",
            &buf[..buf.len().min(8)]
        ))
    }
}
