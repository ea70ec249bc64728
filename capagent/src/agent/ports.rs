//! The port check before a start: a server whose allocation is taken by another process is not
//! started (the game would fail to bind, or worse, bind a port someone else's clients reach).

use capcore::protocol::v1::{ErrorCode, Outcome};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

/// `Conflict` naming the address and protocol when the spec's allocation (`SERVER_IP`,
/// `SERVER_PORT`) cannot be bound for TCP or for UDP now. A spec without an allocation passes.
pub(super) fn check_allocation(environment: &BTreeMap<String, String>) -> Result<(), Outcome> {
    let (Some(ip), Some(port)) = (environment.get("SERVER_IP"), environment.get("SERVER_PORT")) else {
        return Ok(());
    };
    let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), port.parse::<u16>()) else {
        return Ok(());
    };
    let addr = SocketAddr::new(ip, port);
    let taken = |protocol: &str, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Err(Outcome::Error {
                code: ErrorCode::Conflict,
                message: format!(
                    "port {port} ({protocol}) on {ip} is in use by another process; free it or give the server another allocation"
                ),
            })
        } else {
            // Not ours to judge (an address this node does not have, say): the game will tell.
            Ok(())
        }
    };
    // Both probes close at once; a listening socket of the game's previous run is gone, since
    // its exit was waited for.
    if let Err(e) = TcpListener::bind(addr) {
        taken("TCP", e)?;
    }
    if let Err(e) = UdpSocket::bind(addr) {
        taken("UDP", e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(ip: &str, port: u16) -> BTreeMap<String, String> {
        BTreeMap::from([("SERVER_IP".into(), ip.into()), ("SERVER_PORT".into(), port.to_string())])
    }

    #[test]
    fn a_taken_port_is_named_and_a_free_one_passes() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        match check_allocation(&env("127.0.0.1", port)) {
            Err(Outcome::Error { code: ErrorCode::Conflict, message }) => {
                assert!(message.contains(&format!("port {port} (TCP) on 127.0.0.1")), "{message}")
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        drop(tcp);
        // A UDP port whose TCP twin another process on this machine holds is reported for TCP
        // first: such a port is passed over.
        let (udp, port) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                let port = udp.local_addr().unwrap().port();
                match check_allocation(&env("127.0.0.1", port)) {
                    Err(Outcome::Error { message, .. }) if message.contains("(TCP)") => None,
                    Err(Outcome::Error { message, .. }) => {
                        assert!(message.contains("(UDP)"), "{message}");
                        Some((udp, port))
                    }
                    other => panic!("expected a conflict, got {other:?}"),
                }
            })
            .expect("a UDP port whose TCP twin is free");
        drop(udp);
        assert_eq!(check_allocation(&env("127.0.0.1", port)), Ok(()));
        assert_eq!(check_allocation(&BTreeMap::new()), Ok(()), "no allocation, nothing to check");
    }
}
