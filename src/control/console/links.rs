//! The pages a one-time link opens, outside a session: the first owner's setup and an
//! invite's acceptance (the account made, its first API token shown once), a password
//! reset, and what such a link answers when it no longer works. The API's handlers make
//! the change; these render what the browser sees, in the console's frame and under its
//! Content-Security-Policy, with the link kept out of any `Referer`.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::{Frame, render};

/// The setup form: the account a link makes.
#[derive(Template)]
#[template(path = "console/setup.html")]
struct SetupForm<'a> {
    frame: Frame,
    /// The invite's email (fixed), or `""` for the first owner (typed).
    email: &'a str,
    role: &'a str,
}

/// The account made, with its first API token shown once.
#[derive(Template)]
#[template(path = "console/setup_done.html")]
struct SetupDone<'a> {
    frame: Frame,
    email: &'a str,
    role: &'a str,
    token: &'a str,
    api_url: &'a str,
    /// The browser was signed in (else: sign in through the identity provider).
    signed_in: bool,
}

/// A password reset form.
#[derive(Template)]
#[template(path = "console/reset.html")]
struct ResetForm {
    frame: Frame,
    min: usize,
    /// The member has an authenticator: its code is asked too.
    code: bool,
}

/// A sentence, and where to go next.
#[derive(Template)]
#[template(path = "console/notice.html")]
struct Notice<'a> {
    frame: Frame,
    message: &'a str,
    next: Option<(&'a str, &'a str)>,
}

/// A rendered link page: the console's headers, and `Referrer-Policy: strict-origin`
/// (the link in the address never leaves in a `Referer`; `no-referrer` would make a
/// browser post the page's form with `Origin: null`, which the sign-in guard refuses).
fn link_page(status: StatusCode, page: &impl Template) -> Response {
    let mut response = render(status, page);
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin"),
    );
    response
}

/// The setup form of a link for `email` (`""`: the first owner types it) joining as
/// `role`.
pub fn setup_form(email: &str, role: &str) -> Response {
    link_page(
        StatusCode::OK,
        &SetupForm {
            frame: Frame::outside("Welcome to Sluice"),
            email,
            role,
        },
    )
}

/// The account `email` (`role`) made, its API token `token` shown once.
pub fn setup_done(
    email: &str,
    role: &str,
    token: &str,
    api_url: &str,
    signed_in: bool,
) -> Response {
    link_page(
        StatusCode::OK,
        &SetupDone {
            frame: Frame::outside("You're set up"),
            email,
            role,
            token,
            api_url,
            signed_in,
        },
    )
}

/// The password reset form (`min` characters at least; the authenticator's code when
/// `code`).
pub fn reset_form(min: usize, code: bool) -> Response {
    link_page(
        StatusCode::OK,
        &ResetForm {
            frame: Frame::outside("Reset your password"),
            min,
            code,
        },
    )
}

/// A page titled `title` saying `message`, with a link `next` (`(href, text)`).
pub fn notice(
    status: StatusCode,
    title: &str,
    message: &str,
    next: Option<(&str, &str)>,
) -> Response {
    link_page(
        status,
        &Notice {
            frame: Frame::outside(title),
            message,
            next,
        },
    )
}
