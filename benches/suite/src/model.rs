//! A serde data model (orders, customers, config) and JSON helpers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::data::{person_name, Rng, CITIES, WORDS};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub postcode: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub address: Address,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Paid { at: String },
    Shipped { carrier: String, tracking: String },
    Cancelled(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub description: String,
    pub qty: u32,
    pub unit_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer: Customer,
    pub lines: Vec<Line>,
    pub status: Status,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, Value>,
}

impl Order {
    pub fn total_cents(&self) -> u64 {
        self.lines
            .iter()
            .map(|l| l.unit_cents * u64::from(l.qty))
            .sum()
    }
}

pub fn random_customer(rng: &mut Rng, id: u64) -> Customer {
    let name = person_name(rng);
    Customer {
        id,
        email: format!("{}@example.com", crate::text::slugify(&name)),
        name,
        address: Address {
            street: format!(
                "{} {} Street",
                1 + rng.below(300),
                crate::data::capitalize(rng.pick(WORDS))
            ),
            city: rng.pick(CITIES).to_string(),
            postcode: format!("{:05}", rng.below(100_000)),
        },
        phones: (0..rng.below(3))
            .map(|_| format!("+351 {:09}", rng.below(1_000_000_000)))
            .collect(),
    }
}

pub fn random_order(rng: &mut Rng, n: u64) -> Order {
    let lines = (0..1 + rng.below(8))
        .map(|i| Line {
            sku: format!("SKU-{:06}", rng.below(10_000)),
            description: crate::data::lorem(n * 31 + i, 4 + rng.below(8) as usize),
            qty: 1 + rng.below(5) as u32,
            unit_cents: 50 + rng.below(20_000),
        })
        .collect();
    let status = match rng.below(4) {
        0 => Status::Pending,
        1 => Status::Paid {
            at: format!("2026-0{}-1{}T10:00:00Z", 1 + rng.below(9), rng.below(10)),
        },
        2 => Status::Shipped {
            carrier: "DHL".into(),
            tracking: format!("JD{:012}", rng.below(1 << 40)),
        },
        _ => Status::Cancelled(crate::data::lorem(n, 6)),
    };
    let mut meta = BTreeMap::new();
    if rng.chance(50) {
        meta.insert(
            "channel".into(),
            json!(if rng.chance(50) { "web" } else { "app" }),
        );
    }
    if rng.chance(30) {
        meta.insert(
            "coupons".into(),
            json!([format!("C{}", rng.below(999)), "WELCOME"]),
        );
    }
    if rng.chance(20) {
        meta.insert(
            "gift".into(),
            json!({"wrap": true, "message": crate::data::lorem(n + 7, 10)}),
        );
    }
    Order {
        id: format!("ORD-{n:08}"),
        customer: random_customer(rng, n % 97),
        lines,
        status,
        notes: rng.chance(40).then(|| crate::data::lorem(n ^ 0xabc, 12)),
        meta,
    }
}

pub fn random_orders(seed: u64, count: usize) -> Vec<Order> {
    let mut rng = Rng::new(seed);
    (0..count as u64)
        .map(|n| random_order(&mut rng, n))
        .collect()
}

/// Totals per city, in cents, from the orders' JSON without deserialising into `Order`.
pub fn totals_by_city(orders_json: &str) -> BTreeMap<String, u64> {
    let value: Value = serde_json::from_str(orders_json).expect("valid JSON");
    let mut out = BTreeMap::new();
    for order in value.as_array().expect("an array") {
        let city = order["customer"]["address"]["city"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        let total: u64 = order["lines"]
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .map(|l| l["qty"].as_u64().unwrap_or(0) * l["unit_cents"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        *out.entry(city).or_insert(0) += total;
    }
    out
}

/// Every path to a leaf in a JSON value, like `a.b[2].c`, with the leaf rendered.
pub fn flatten(value: &Value) -> Vec<(String, String)> {
    fn walk(value: &Value, path: &mut String, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(v, path, out);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(v, path, out);
                    path.truncate(len);
                }
            }
            leaf => out.push((path.clone(), leaf.to_string())),
        }
    }
    let mut out = Vec::new();
    walk(value, &mut String::new(), &mut out);
    out
}

/// Application settings with defaults for missing fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub name: String,
    pub workers: u32,
    pub listen: Vec<String>,
    pub log_level: String,
    pub features: BTreeMap<String, bool>,
    pub limits: Limits,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub timeout_ms: u64,
    pub per_ip: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: "service".into(),
            workers: 4,
            listen: vec!["127.0.0.1:8080".into()],
            log_level: "info".into(),
            features: BTreeMap::new(),
            limits: Limits::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            timeout_ms: 30_000,
            per_ip: None,
        }
    }
}

/// Merges `overlay` into `base` (objects recursively, everything else replaced).
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}
