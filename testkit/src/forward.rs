//! A TCP forwarder on loopback standing for the load balancer in front of a hub group: clients
//! keep one address while it forwards to whichever node it is pointed at. Pointing it elsewhere
//! cuts the connections it carries, as a balancer does when its backend dies.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards every connection to its target; stops when dropped.
pub struct Forwarder {
    /// Where clients connect.
    pub address: String,
    target: Arc<Mutex<String>>,
    moved: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Listens on a free loopback port, forwarding to `target`.
    pub async fn start(target: &str) -> Result<Forwarder> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let target = Arc::new(Mutex::new(target.to_owned()));
        let (moved, _) = watch::channel(0);
        let task = tokio::spawn(accept(listener, Arc::clone(&target), moved.clone()));
        Ok(Forwarder {
            address,
            target,
            moved,
            task,
        })
    }

    /// Forwards new connections to `target` and cuts those open.
    pub fn point_at(&self, target: &str) {
        *self.target.lock().expect("target lock") = target.to_owned();
        self.moved.send_modify(|generation| *generation += 1);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, target: Arc<Mutex<String>>, moved: watch::Sender<u64>) {
    while let Ok((mut client, _)) = listener.accept().await {
        // Subscribed first: a move after reading the target still cuts this connection.
        let mut moved = moved.subscribe();
        let to = target.lock().expect("target lock").clone();
        tokio::spawn(async move {
            // A backend that is down closes the client's connection at once.
            let Ok(mut backend) = TcpStream::connect(&to).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut backend) => {}
                _ = moved.changed() => {}
            }
        });
    }
}
