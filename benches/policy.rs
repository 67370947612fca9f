//! `authorize` cost: one decision for a member with grants on labels and groups
//! (target ≤ 2 µs per decision). `cargo bench --bench policy`.

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use sluice::control::policy::{
    Action, DestinationRef, Grant, Group, Level, Principal, ResourceRef, Role, Scope, Settings,
    SourceRef, Target, Token, User, authorize,
};

fn grant(target: Target, level: Level) -> Grant {
    Grant {
        target,
        level,
        expires_at: None,
    }
}

fn decide(c: &mut Criterion) {
    let label = |v: &str| Target::SourceLabel {
        key: "environment".into(),
        value: v.into(),
    };
    let user = User {
        id: "u".into(),
        role: Role::Member,
        active: true,
        scoped: false,
        elevations: Vec::new(),
        grants: (0..20)
            .map(|n| {
                grant(
                    Target::Source {
                        id: format!("s{n}"),
                    },
                    Level::ReadOnly,
                )
            })
            .chain([grant(label("staging"), Level::Full)])
            .collect(),
        groups: (0..5)
            .map(|n| Group {
                name: format!("g{n}"),
                role: None,
                grants: vec![
                    grant(label("prod"), Level::ReadOnly),
                    grant(
                        Target::Destination {
                            id: format!("d{n}"),
                        },
                        Level::ReadWrite,
                    ),
                ],
            })
            .collect(),
    };
    let token = Token {
        id: "t".into(),
        scopes: vec![Scope::SourcesRead, Scope::SourcesWrite],
        expires_at: Utc::now() + chrono::TimeDelta::days(30),
        revoked_at: None,
    };
    let labels = vec![("environment".to_owned(), "prod".to_owned())];
    let source = ResourceRef::Source(SourceRef {
        id: "web",
        labels: &labels,
    });
    let now = Utc::now();
    let mut g = c.benchmark_group("authorize");
    g.bench_function("member, label + group grants, via token", |b| {
        b.iter(|| {
            authorize(
                Principal {
                    user: &user,
                    token: Some(&token),
                },
                Action::EditSource,
                std::hint::black_box(source),
                Settings::default(),
                now,
            )
        })
    });
    g.bench_function("connect (two resources)", |b| {
        b.iter(|| {
            authorize(
                Principal {
                    user: &user,
                    token: None,
                },
                Action::Connect,
                std::hint::black_box(ResourceRef::Connection(
                    SourceRef {
                        id: "s3",
                        labels: &labels,
                    },
                    DestinationRef {
                        id: "d3",
                        connected: &[],
                    },
                )),
                Settings::default(),
                now,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
