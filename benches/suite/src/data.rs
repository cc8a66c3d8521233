//! Deterministic test data: a small xorshift generator and word lists.

/// xorshift64*: deterministic, seedable, no dependencies.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "Ærø", "Straße", "naïve", "café",
];

pub const CITIES: &[&str] = &[
    "Lisbon", "Oslo", "Kraków", "Zürich", "Dublin", "Tallinn", "Porto", "Gent", "Lyon", "Turin",
];

/// `words` pseudo-random words separated by spaces, with some punctuation.
pub fn lorem(seed: u64, words: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::new();
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(WORDS));
        match rng.below(12) {
            0 => out.push(','),
            1 => out.push('.'),
            _ => {}
        }
    }
    out
}

/// A name like `Kilo Tango-Romeo`.
pub fn person_name(rng: &mut Rng) -> String {
    let first = capitalize(rng.pick(WORDS));
    let last = capitalize(rng.pick(WORDS));
    if rng.chance(30) {
        format!("{first} {last}-{}", capitalize(rng.pick(WORDS)))
    } else {
        format!("{first} {last}")
    }
}

pub fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
