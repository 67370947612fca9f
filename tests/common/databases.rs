//! The control-plane store on both databases: a fresh SQLite file and a fresh,
//! throw-away PostgreSQL database per test (dropped when the test ends).

use sluice::control::secret::Key;
use sluice::control::store::Store;
use sqlx::Connection as _;

/// Where the PostgreSQL server is (`scripts/services.sh` starts it); any database on it
/// that the test user may connect to, the throw-away ones are created beside it.
pub fn postgres_admin_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// One store under test.
pub struct TestDb {
    /// `sqlite` or `postgres`.
    pub label: &'static str,
    /// The store.
    pub store: Store,
    /// Its URL (for a second process or a raw connection).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    /// Closes the store and drops the throw-away PostgreSQL database.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some(name) = self.pg_name {
            let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
                .await
                .expect("connect to PostgreSQL to drop the test database");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .expect("drop test database");
        }
    }

    /// A raw connection (to tamper with rows as an attacker with database access would).
    pub async fn raw(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.url)
            .await
            .expect("raw connection")
    }
}

/// The test key for destination secrets.
pub fn key() -> Key {
    Key::from_bytes(&[7; 32])
}

/// A fresh store on SQLite.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("control.db").display()
    );
    let store = Store::open(&url, key()).await.expect("open SQLite store");
    TestDb {
        label: "sqlite",
        store,
        url,
        _dir: Some(dir),
        pg_name: None,
    }
}

/// A fresh store on a new PostgreSQL database.
pub async fn postgres() -> TestDb {
    let admin_url = postgres_admin_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin_url} is needed by the store tests (scripts/services.sh starts it): {e}")
    });
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!("sluice_t_{stamp}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("database URL with a path");
    let url = format!("{base}/{name}");
    let store = Store::open(&url, key())
        .await
        .expect("open PostgreSQL store");
    TestDb {
        label: "postgres",
        store,
        url,
        _dir: None,
        pg_name: Some(name),
    }
}

/// Both.
pub async fn both() -> Vec<TestDb> {
    vec![sqlite().await, postgres().await]
}
