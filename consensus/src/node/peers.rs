//! The extension point of the peer listener: the embedder adds its own peer services beside
//! raft's and the group API's, behind the same check.

use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;

use crate::transport::net::HubPeersOnly;
use crate::transport::routes::GrpcRoutes;

/// The peer listener's services as [`super::Node::start`] hands them to the embedder: raft's and the
/// group API's are in; the embedder adds its own with [`PeerRouter::add_service`].
pub struct PeerRouter {
    pub(super) routes: GrpcRoutes,
    pub(super) peers_only: HubPeersOnly,
}

impl PeerRouter {
    /// Serves `service` on the peer listener too, behind the same check as raft's: only hub
    /// nodes (a node certificate, over mutual TLS) get in.
    pub fn add_service<Svc, B>(mut self, service: Svc) -> Self
    where
        Svc: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<B>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        Svc::Future: Send + 'static,
        B: hyper::body::Body<Data = hyper::body::Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        self.routes = self
            .routes
            .add_service(InterceptedService::new(service, self.peers_only));
        self
    }
}
