use std::collections::BTreeMap;

use bench_suite::data::{lorem, Rng};
use bench_suite::model::*;
use serde_json::{json, Value};

macro_rules! order_round_trips {
    ($($name:ident: $seed:expr, $count:expr;)*) => {$(
        #[test]
        #[cfg_attr(feature = "checked", leakcheck::leakcheck)]
        fn $name() {
            let orders = random_orders($seed, $count);
            let text = serde_json::to_string(&orders).unwrap();
            let back: Vec<Order> = serde_json::from_str(&text).unwrap();
            assert_eq!(back, orders);
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value.as_array().unwrap().len(), $count);
        }
    )*};
}

order_round_trips! {
    orders_round_trip_10: 1, 10;
    orders_round_trip_25: 2, 25;
    orders_round_trip_50: 3, 50;
    orders_round_trip_75: 4, 75;
    orders_round_trip_100: 5, 100;
    orders_round_trip_150: 6, 150;
    orders_round_trip_200: 7, 200;
    orders_round_trip_250: 8, 250;
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn pretty_printed_orders_round_trip() {
    let orders = random_orders(9, 80);
    let text = serde_json::to_string_pretty(&orders).unwrap();
    assert!(text.lines().count() > 80 * 10);
    let back: Vec<Order> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, orders);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn city_totals_from_untyped_json_match_typed() {
    let orders = random_orders(10, 150);
    let text = serde_json::to_string(&orders).unwrap();
    let totals = totals_by_city(&text);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for o in &orders {
        *expected.entry(o.customer.address.city.clone()).or_insert(0) += o.total_cents();
    }
    assert_eq!(totals, expected);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn flatten_order_paths() {
    let orders = random_orders(11, 60);
    let value = serde_json::to_value(&orders).unwrap();
    let paths = flatten(&value);
    assert!(paths.iter().any(|(p, _)| p == "[0].customer.address.city"));
    assert!(paths.iter().all(|(p, _)| p.starts_with('[')));
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn settings_defaults_fill_missing_fields() {
    for i in 0..300 {
        let text = format!(r#"{{"name": "svc-{i}", "workers": {i}, "limits": {{"per_ip": {i}}}}}"#);
        let s: Settings = serde_json::from_str(&text).unwrap();
        assert_eq!(s.workers, i);
        assert_eq!(s.log_level, "info");
        assert_eq!(s.limits.timeout_ms, 30_000);
        assert_eq!(s.limits.per_ip, Some(i));
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn settings_reject_unknown_fields() {
    for i in 0..300 {
        let text = format!(r#"{{"name": "svc", "wrokers": {i}}}"#);
        let err = serde_json::from_str::<Settings>(&text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `wrokers`"), "{err}");
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn settings_round_trip() {
    for i in 0..200u32 {
        let mut s = Settings {
            name: format!("svc-{i}"),
            workers: i,
            ..Settings::default()
        };
        s.listen = (0..i % 5)
            .map(|p| format!("0.0.0.0:{}", 8000 + p))
            .collect();
        s.features = (0..i % 7)
            .map(|f| (format!("feature-{f}"), f % 2 == 0))
            .collect();
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn merging_overlays() {
    let mut base = serde_json::to_value(Settings::default()).unwrap();
    for i in 0..300 {
        let overlay = json!({"workers": i, "limits": {"timeout_ms": i * 10}, "features": {format!("f{i}"): true}});
        merge(&mut base, &overlay);
    }
    assert_eq!(base["workers"], 299);
    assert_eq!(base["features"].as_object().unwrap().len(), 300);
    let s: Settings = serde_json::from_value(base).unwrap();
    assert_eq!(s.limits.timeout_ms, 2990);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn build_a_large_value_by_hand() {
    let mut root = serde_json::Map::new();
    for i in 0..400 {
        root.insert(
            format!("k{i}"),
            json!({"i": i, "text": lorem(i, 8), "list": (0..i % 10).collect::<Vec<_>>(), "nested": {"ok": i % 2 == 0}}),
        );
    }
    let text = Value::Object(root).to_string();
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back["k123"]["i"], 123);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn status_enum_is_externally_tagged() {
    let statuses = [
        Status::Pending,
        Status::Paid {
            at: "2026-01-01".into(),
        },
        Status::Shipped {
            carrier: "UPS".into(),
            tracking: "1Z".into(),
        },
        Status::Cancelled("changed mind".into()),
    ];
    for _ in 0..300 {
        for s in &statuses {
            let text = serde_json::to_string(s).unwrap();
            assert_eq!(&serde_json::from_str::<Status>(&text).unwrap(), s);
        }
    }
    assert_eq!(
        serde_json::to_string(&Status::Pending).unwrap(),
        r#""pending""#
    );
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn customers_through_value() {
    let mut rng = Rng::new(12);
    for id in 0..400 {
        let c = random_customer(&mut rng, id);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["id"], id);
        assert_eq!(serde_json::from_value::<Customer>(v).unwrap(), c);
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn json_lines_stream() {
    let orders = random_orders(13, 120);
    let mut stream = Vec::new();
    for o in &orders {
        serde_json::to_writer(&mut stream, o).unwrap();
        stream.push(b'\n');
    }
    let back: Vec<Order> = serde_json::Deserializer::from_slice(&stream)
        .into_iter::<Order>()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back, orders);
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn parse_errors_have_positions() {
    let good = serde_json::to_string(&random_orders(14, 20)).unwrap();
    for cut in (10..good.len()).step_by(good.len() / 150) {
        let err = serde_json::from_slice::<Vec<Order>>(&good.as_bytes()[..cut]).unwrap_err();
        assert!(err.line() >= 1 && err.column() >= 1);
        assert!(!err.to_string().is_empty());
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn maps_serialize_with_sorted_keys() {
    for i in 0..200 {
        let map: BTreeMap<String, u32> = (0..30)
            .map(|k| (format!("key{}", (k * 7 + i) % 30), k))
            .collect();
        let text = serde_json::to_string(&map).unwrap();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&text)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn unicode_and_escapes_survive() {
    for seed in 0..400 {
        let s = format!(
            "{} \"quoted\" \\ back\tslash \u{1F600} {}",
            lorem(seed, 5),
            seed
        );
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<String>(&text).unwrap(), s);
    }
}

#[test]
#[cfg_attr(feature = "checked", leakcheck::leakcheck)]
fn order_totals_via_value_pointer() {
    let orders = random_orders(15, 150);
    let value = serde_json::to_value(&orders).unwrap();
    for (i, o) in orders.iter().enumerate() {
        let lines = value
            .pointer(&format!("/{i}/lines"))
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(lines.len(), o.lines.len());
    }
}
