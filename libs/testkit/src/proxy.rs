//! A TCP proxy on loopback that can cut its connections, to make a dependency unreachable
//! for a moment.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards connections from a loopback port to `target` until [`TcpProxy::cut`].
#[derive(Debug)]
pub struct TcpProxy {
    /// Where clients connect.
    port: u16,
    /// Cancelled to cut every connection; replaced by a fresh token on restore. `None` while
    /// cut: new connections are closed at once.
    live: Arc<Mutex<Option<CancellationToken>>>,
    /// Stops the accept loop when the proxy is dropped.
    stop: CancellationToken,
}

impl TcpProxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy port");
        let port = listener.local_addr().expect("local address").port();
        let live = Arc::new(Mutex::new(Some(CancellationToken::new())));
        let stop = CancellationToken::new();
        let (accept_live, accept_stop) = (live.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accept_stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let token = accept_live.lock().expect("not poisoned").clone();
                let Some(token) = token else {
                    drop(client);
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self { port, live, stop }
    }

    /// The port clients connect to on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every connection and refuses new ones, as an outage would.
    pub fn cut(&self) {
        if let Some(token) = self.live.lock().expect("not poisoned").take() {
            token.cancel();
        }
    }

    /// Forwards again.
    pub fn restore(&self) {
        let mut live = self.live.lock().expect("not poisoned");
        if live.is_none() {
            *live = Some(CancellationToken::new());
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}
