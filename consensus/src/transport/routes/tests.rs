#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::{Service, ServiceExt};

use super::GrpcRoutes;

/// A service that answers every call with its name in a header.
#[derive(Clone)]
struct Named<const N: usize>;

impl NamedService for Named<1> {
    const NAME: &'static str = "test.One";
}

impl NamedService for Named<2> {
    const NAME: &'static str = "test.Two";
}

impl<const N: usize> Service<http::Request<Body>> for Named<N> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<Body>) -> Self::Future {
        let response = http::Response::builder()
            .header("served-by", N.to_string())
            .body(Body::empty())
            .unwrap();
        Box::pin(std::future::ready(Ok(response)))
    }
}

async fn call(routes: &GrpcRoutes, path: &str) -> http::Response<Body> {
    let request = http::Request::builder()
        .method("POST")
        .uri(path)
        .body(Body::empty())
        .unwrap();
    routes.clone().oneshot(request).await.unwrap()
}

fn header<'a>(response: &'a http::Response<Body>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn each_method_reaches_the_service_of_its_name() {
    let routes = GrpcRoutes::default()
        .add_service(Named::<1>)
        .add_service(Named::<2>);
    assert_eq!(
        header(&call(&routes, "/test.One/Get").await, "served-by"),
        Some("1")
    );
    assert_eq!(
        header(&call(&routes, "/test.Two/Put").await, "served-by"),
        Some("2")
    );
}

#[tokio::test]
async fn a_path_of_no_service_is_unimplemented() {
    let routes = GrpcRoutes::default().add_service(Named::<1>);
    for path in ["/test.Three/Get", "/test.One/", "/test.On/Get", "/"] {
        let response = call(&routes, path).await;
        assert_eq!(response.status(), http::StatusCode::OK, "{path}");
        assert_eq!(header(&response, "served-by"), None, "{path}");
        assert_eq!(header(&response, "grpc-status"), Some("12"), "{path}");
    }
}
