//! Error pages: the library answers errors in JSON; browsers get HTML here,
//! and anonymous visitors of protected pages are sent to the login page.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use tower::{Layer, Service};

use crate::csrf::CsrfRefusal;
use crate::error::{AppError, ErrorInfo};
use crate::negotiate::Format;
use crate::paths::Paths;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    paths: &'a Paths,
    title: Cow<'a, str>,
    message: Cow<'a, str>,
    /// Said under a refused request: it had no effect.
    hint: Option<&'static str>,
    link: (Cow<'a, str>, &'static str),
}

impl<'a> ErrorPage<'a> {
    /// The page for an error; a refused cross-site request check is told in
    /// plain words, with where latchkey really is when the origin says so.
    fn of(status: StatusCode, info: &'a ErrorInfo, paths: &'a Paths) -> Self {
        let link = (Cow::Borrowed(paths.home()), "Go to the start page");
        let (title, message, link) = match &info.csrf {
            Some(CsrfRefusal::OriginNotAllowed { origin, expected }) => (
                "Request refused".into(),
                format!(
                    "This request came from {origin}, but this site is at {expected}. \
                     If you meant to do this, open the site there and try again."
                )
                .into(),
                (
                    format!("{expected}{}", paths.home()).into(),
                    "Open it there",
                ),
            ),
            Some(CsrfRefusal::CrossSite(_)) => (
                "Request refused".into(),
                "This request came from another site, so it was refused. \
                 If you meant to do this, open this site yourself and try again."
                    .into(),
                link,
            ),
            Some(_) => (
                "This page was out of date".into(),
                "The page you used was out of date. Go back, reload the page and try again.".into(),
                link,
            ),
            None => (
                status.to_string().into(),
                Cow::Borrowed(&*info.message),
                link,
            ),
        };
        Self {
            paths,
            title,
            message,
            hint: info.csrf.is_some().then_some("Nothing was changed."),
            link,
        }
    }
}

/// Renders a page with a status; a template failure becomes a plain 500.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => AppError::Internal(e.into()).into_response(),
    }
}

/// Turns [`AppError`] responses into HTML pages for browsers (JSON clients
/// keep the JSON), sends anonymous browsers on protected pages to the login
/// page, and gives the pages it renders the security headers (CSP,
/// `X-Frame-Options`, `nosniff`). An app's own answers get only
/// `Cache-Control: no-store` when they say nothing about caching: their
/// other headers are the app's to set (for example with `tower-http`'s
/// `SetResponseHeader`). In the service it also answers 408 to a
/// request not answered within the request timeout (a body that trickles
/// in, or work that hangs; its work is dropped, and hyper closes the
/// connection when the body was not read to its end). The timeout is here,
/// outside everything else, so that its answer is rendered like any other.
/// A plain tower layer with its own future: a request answered at its first
/// poll costs it no allocation and no timer.
#[derive(Debug, Clone)]
pub struct PageLayer {
    /// Send `Strict-Transport-Security` (the site is served over https).
    pub hsts: bool,
    /// `LATCHKEY_REQUEST_TIMEOUT`; `None` for none.
    pub request_timeout: Option<Duration>,
    /// Where the login page is.
    pub paths: Paths,
    /// Add the security headers to every answer (the service, whose every
    /// page is latchkey's), or only to the error pages rendered here (an
    /// app's own pages keep their own headers).
    pub every_answer: bool,
}

impl<S> Layer<S> for PageLayer {
    type Service = PageService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PageService {
            inner,
            hsts: self.hsts,
            request_timeout: self.request_timeout,
            paths: self.paths,
            every_answer: self.every_answer,
        }
    }
}

/// The service made by [`PageLayer`].
#[derive(Debug, Clone)]
pub struct PageService<S> {
    inner: S,
    hsts: bool,
    request_timeout: Option<Duration>,
    paths: Paths,
    every_answer: bool,
}

impl<S> Service<Request> for PageService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = PageFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // Only the two headers that decide the format are kept (cheap
        // clones); they are parsed only when the answer is an error.
        let accept = req.headers().get(header::ACCEPT).cloned();
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        PageFuture {
            inner: self.inner.call(req),
            accept,
            content_type,
            hsts: self.hsts,
            request_timeout: self.request_timeout,
            paths: self.paths,
            every_answer: self.every_answer,
            deadline: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`PageService`].
    pub struct PageFuture<F> {
        #[pin]
        inner: F,
        accept: Option<HeaderValue>,
        content_type: Option<HeaderValue>,
        hsts: bool,
        request_timeout: Option<Duration>,
        paths: Paths,
        every_answer: bool,
        // Made only when the answer is not ready at the first poll: most
        // answers are (a cached session), and a `Sleep` made up front costs
        // each of them the runtime handle's shared reference count.
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F> Future for PageFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Pending => {
                let Some(timeout) = *this.request_timeout else {
                    return Poll::Pending;
                };
                match this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)))
                    .as_mut()
                    .poll(cx)
                {
                    Poll::Ready(()) => {
                        tracing::info!("request not answered within the request timeout: 408");
                        AppError::RequestTimeout.into_response()
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        };
        if response.extensions().get::<ErrorInfo>().is_some() {
            let format = Format::from_headers(this.accept.as_ref(), this.content_type.as_ref());
            let response = render_error(response, format, *this.paths);
            return Poll::Ready(Ok(super::security_headers(response, *this.hsts)));
        }
        Poll::Ready(Ok(if *this.every_answer {
            super::security_headers(response, *this.hsts)
        } else {
            let mut response = response;
            no_store_unless_said(response.headers_mut());
            response
        }))
    }
}

/// An app's answer that says nothing about caching is not kept: a signed-in
/// person's page must not come back from the browser's history or a shared
/// cache after they sign out. What may be kept says so itself.
pub(super) fn no_store_unless_said(headers: &mut axum::http::HeaderMap) {
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn render_error(response: Response, format: Format, paths: Paths) -> Response {
    if format == Format::Json {
        return response;
    }
    let Some(info) = response.extensions().get::<ErrorInfo>().cloned() else {
        return response;
    };
    let status = response.status();
    if info.code == "not_authenticated" {
        let next = info.login_next.as_deref().unwrap_or(paths.home());
        let target = format!(
            "{}?next={}{}",
            paths.login(),
            percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC),
            if info.session_ended {
                "&reason=ended"
            } else {
                ""
            }
        );
        return Redirect::to(&target).into_response();
    }
    let mut html = page(status, &ErrorPage::of(status, &info, &paths));
    for name in [header::RETRY_AFTER, header::SET_COOKIE] {
        for value in response.headers().get_all(&name) {
            html.headers_mut().append(name.clone(), value.clone());
        }
    }
    html.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    html
}

#[cfg(feature = "server")]
pub(crate) async fn not_found() -> AppError {
    AppError::NotFound
}

#[cfg(feature = "server")]
pub(crate) async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
