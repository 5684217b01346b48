//! The gRPC services of one listener, routed by path (`/package.Service/Method`) to the service
//! of that name, as tonic's router routes them (without its axum dependency); a path of no
//! service is answered `UNIMPLEMENTED`, as tonic's router answers it.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use hyper::body::Bytes;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

/// A gRPC service as routes hold it: any body, any future, boxed.
type Boxed = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// gRPC services by name, served as one.
#[derive(Clone, Default)]
pub struct GrpcRoutes {
    /// Each service with the path prefix it answers, `/package.Service/`.
    services: Arc<Vec<(String, Boxed)>>,
}

impl GrpcRoutes {
    /// These routes and `service`, which answers the paths of its name.
    pub fn add_service<S, B>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        let boxed = BoxCloneSyncService::new(
            service.map_response(|response: http::Response<B>| response.map(Body::new)),
        );
        Arc::make_mut(&mut self.services).push((format!("/{}/", S::NAME), boxed));
        self
    }

    /// The service answering `path`, if any.
    fn route(&self, path: &str) -> Option<Boxed> {
        self.services
            .iter()
            .find(|(prefix, _)| path.len() > prefix.len() && path.starts_with(prefix.as_str()))
            .map(|(_, service)| service.clone())
    }
}

impl Service<http::Request<Body>> for GrpcRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call waits for its own service to be ready (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.route(request.uri().path()) {
            Some(service) => Box::pin(service.oneshot(request)),
            None => Box::pin(std::future::ready(Ok(unimplemented()))),
        }
    }
}

/// tonic's answer to a path of no service: HTTP 200 with `grpc-status: 12`.
fn unimplemented() -> http::Response<Body> {
    let (parts, ()) = Status::unimplemented("").into_http::<()>().into_parts();
    http::Response::from_parts(parts, Body::empty())
}

#[cfg(test)]
mod tests;
