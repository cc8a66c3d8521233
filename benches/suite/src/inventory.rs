//! A stock-keeping model: HashMap and BTreeMap indexes kept in step.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::data::{Rng, WORDS};

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub sku: String,
    pub name: String,
    pub qty: u32,
    pub price_cents: u64,
    pub tags: Vec<String>,
}

#[derive(Default, Debug)]
pub struct Inventory {
    by_sku: HashMap<String, Item>,
    by_tag: BTreeMap<String, BTreeSet<String>>,
    by_price: BTreeMap<u64, BTreeSet<String>>,
    history: Vec<Event>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Added(String),
    Removed(String),
    Restocked { sku: String, qty: u32 },
    Sold { sku: String, qty: u32 },
}

#[derive(Debug, PartialEq)]
pub enum StockError {
    Unknown(String),
    Insufficient { sku: String, wanted: u32, have: u32 },
}

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.by_sku.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sku.is_empty()
    }

    pub fn add(&mut self, item: Item) {
        if self.by_sku.contains_key(&item.sku) {
            self.remove(&item.sku.clone());
        }
        for tag in &item.tags {
            self.by_tag
                .entry(tag.clone())
                .or_default()
                .insert(item.sku.clone());
        }
        self.by_price
            .entry(item.price_cents)
            .or_default()
            .insert(item.sku.clone());
        self.history.push(Event::Added(item.sku.clone()));
        self.by_sku.insert(item.sku.clone(), item);
    }

    pub fn remove(&mut self, sku: &str) -> Option<Item> {
        let item = self.by_sku.remove(sku)?;
        for tag in &item.tags {
            if let Some(set) = self.by_tag.get_mut(tag) {
                set.remove(sku);
                if set.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
        if let Some(set) = self.by_price.get_mut(&item.price_cents) {
            set.remove(sku);
            if set.is_empty() {
                self.by_price.remove(&item.price_cents);
            }
        }
        self.history.push(Event::Removed(sku.to_string()));
        Some(item)
    }

    pub fn get(&self, sku: &str) -> Option<&Item> {
        self.by_sku.get(sku)
    }

    pub fn restock(&mut self, sku: &str, qty: u32) -> Result<u32, StockError> {
        let item = self
            .by_sku
            .get_mut(sku)
            .ok_or_else(|| StockError::Unknown(sku.into()))?;
        item.qty += qty;
        self.history.push(Event::Restocked {
            sku: sku.into(),
            qty,
        });
        Ok(item.qty)
    }

    pub fn sell(&mut self, sku: &str, qty: u32) -> Result<u64, StockError> {
        let item = self
            .by_sku
            .get_mut(sku)
            .ok_or_else(|| StockError::Unknown(sku.into()))?;
        if item.qty < qty {
            return Err(StockError::Insufficient {
                sku: sku.into(),
                wanted: qty,
                have: item.qty,
            });
        }
        item.qty -= qty;
        self.history.push(Event::Sold {
            sku: sku.into(),
            qty,
        });
        Ok(item.price_cents * u64::from(qty))
    }

    pub fn with_tag(&self, tag: &str) -> Vec<&Item> {
        self.by_tag
            .get(tag)
            .map(|skus| skus.iter().filter_map(|s| self.by_sku.get(s)).collect())
            .unwrap_or_default()
    }

    /// SKUs priced in `lo..=hi` cents, cheapest first.
    pub fn in_price_range(&self, lo: u64, hi: u64) -> Vec<String> {
        self.by_price
            .range(lo..=hi)
            .flat_map(|(_, skus)| skus.iter().cloned())
            .collect()
    }

    pub fn total_value(&self) -> u64 {
        self.by_sku
            .values()
            .map(|i| i.price_cents * u64::from(i.qty))
            .sum()
    }

    pub fn tags(&self) -> Vec<(String, usize)> {
        self.by_tag
            .iter()
            .map(|(t, s)| (t.clone(), s.len()))
            .collect()
    }

    pub fn history(&self) -> &[Event] {
        &self.history
    }

    /// A text report, one line per item, sorted by SKU.
    pub fn report(&self) -> String {
        let mut items: Vec<&Item> = self.by_sku.values().collect();
        items.sort_by(|a, b| a.sku.cmp(&b.sku));
        let mut out = String::new();
        for item in items {
            out.push_str(&format!(
                "{:<10} {:<28} {:>5} {:>10} [{}]\n",
                item.sku,
                item.name,
                item.qty,
                format!("{}.{:02}", item.price_cents / 100, item.price_cents % 100),
                item.tags.join(",")
            ));
        }
        out
    }

    /// Checks that the indexes agree with the items.
    pub fn consistent(&self) -> bool {
        let tagged: usize = self.by_tag.values().map(BTreeSet::len).sum();
        let tags: usize = self.by_sku.values().map(|i| i.tags.len()).sum();
        let priced: usize = self.by_price.values().map(BTreeSet::len).sum();
        tagged == tags && priced == self.by_sku.len()
    }
}

pub fn random_item(rng: &mut Rng, n: usize) -> Item {
    let ntags = 1 + rng.below(4) as usize;
    let mut tags: Vec<String> = (0..ntags).map(|_| rng.pick(WORDS).to_string()).collect();
    tags.sort();
    tags.dedup();
    Item {
        sku: format!("SKU-{n:06}"),
        name: format!(
            "{} {}",
            crate::data::capitalize(rng.pick(WORDS)),
            rng.pick(WORDS)
        ),
        qty: rng.below(100) as u32,
        price_cents: 99 + rng.below(50_000),
        tags,
    }
}

pub fn random_inventory(seed: u64, items: usize) -> Inventory {
    let mut rng = Rng::new(seed);
    let mut inv = Inventory::new();
    for n in 0..items {
        inv.add(random_item(&mut rng, n));
    }
    inv
}
