//! A browser for sign-in flows: follows no redirects, keeps cookies by hand.

/// A browser: follows no redirects, keeps the cookies it is given by hand.
pub struct Browser {
    /// The client (no redirects, no cookie store).
    pub http: reqwest::Client,
    /// Cookies held, `name=value`.
    pub cookies: Vec<String>,
}

impl Browser {
    /// A browser without cookies.
    pub fn new() -> Self {
        sluice::tls::install_crypto_provider();
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: Vec::new(),
        }
    }

    /// Keeps the cookies a response sets (an emptied one is dropped).
    pub fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let pair = value
                .to_str()
                .ok()
                .and_then(|c| c.split(';').next())
                .unwrap_or_default()
                .to_owned();
            let name = pair.split('=').next().unwrap_or_default().to_owned();
            self.cookies.retain(|c| !c.starts_with(&format!("{name}=")));
            if !pair.ends_with('=') {
                self.cookies.push(pair);
            }
        }
    }

    /// GET with the cookies held.
    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let response = self
            .http
            .get(url)
            .header("cookie", self.cookies.join("; "))
            .send()
            .await
            .expect("get");
        self.keep(&response);
        response
    }

    /// The session cookie, if signed in.
    pub fn session(&self) -> Option<&String> {
        self.cookies
            .iter()
            .find(|c| c.starts_with("sluice_session="))
    }
}

/// A redirect's target.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a redirect")
        .to_owned()
}

impl Browser {
    /// POSTs a form (`application/x-www-form-urlencoded`) with the cookies held.
    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let body = serde_urlencoded::to_string(form).expect("form");
        let response = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", self.cookies.join("; "))
            .body(body)
            .send()
            .await
            .expect("post");
        self.keep(&response);
        response
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}
