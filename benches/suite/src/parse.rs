//! Small parsers: arithmetic expressions to a boxed AST, INI files, CSV, query strings.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    Num(f64),
    Ident(String),
    Op(char),
    LParen,
    RParen,
    Comma,
}

pub fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            tokens.push(Token::Num(
                text.parse()
                    .map_err(|e| format!("bad number {text:?}: {e}"))?,
            ));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            tokens.push(match c {
                '+' | '-' | '*' | '/' | '^' | '%' => Token::Op(c),
                '(' => Token::LParen,
                ')' => Token::RParen,
                ',' => Token::Comma,
                _ => return Err(format!("unexpected character {c:?} at {i}")),
            });
            i += 1;
        }
    }
    Ok(tokens)
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Num(f64),
    Var(String),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Num(n) => write!(f, "{n}"),
            Expr::Var(v) => write!(f, "{v}"),
            Expr::Neg(e) => write!(f, "(-{e})"),
            Expr::Bin(op, a, b) => write!(f, "({a} {op} {b})"),
            Expr::Call(name, args) => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, ")")
            }
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn binding(op: char) -> (u8, u8) {
        match op {
            '+' | '-' => (1, 2),
            '*' | '/' | '%' => (3, 4),
            '^' => (6, 5),
            _ => (0, 0),
        }
    }

    fn expr(&mut self, min: u8) -> Result<Expr, String> {
        let mut lhs = match self.next() {
            Some(Token::Num(n)) => Expr::Num(n),
            Some(Token::Ident(name)) => {
                if self.peek() == Some(&Token::LParen) {
                    self.next();
                    let mut args = Vec::new();
                    if self.peek() != Some(&Token::RParen) {
                        loop {
                            args.push(self.expr(0)?);
                            match self.next() {
                                Some(Token::Comma) => continue,
                                Some(Token::RParen) => break,
                                other => return Err(format!("expected `,` or `)`, got {other:?}")),
                            }
                        }
                    } else {
                        self.next();
                    }
                    Expr::Call(name, args)
                } else {
                    Expr::Var(name)
                }
            }
            Some(Token::Op('-')) => Expr::Neg(Box::new(self.expr(5)?)),
            Some(Token::LParen) => {
                let e = self.expr(0)?;
                match self.next() {
                    Some(Token::RParen) => e,
                    other => return Err(format!("expected `)`, got {other:?}")),
                }
            }
            other => return Err(format!("unexpected {other:?}")),
        };
        while let Some(Token::Op(op)) = self.peek() {
            let op = *op;
            let (l, r) = Self::binding(op);
            if l < min {
                break;
            }
            self.next();
            let rhs = self.expr(r)?;
            lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }
}

pub fn parse_expr(src: &str) -> Result<Expr, String> {
    let mut p = Parser {
        tokens: tokenize(src)?,
        pos: 0,
    };
    let e = p.expr(0)?;
    if p.pos != p.tokens.len() {
        return Err(format!("trailing input at token {}", p.pos));
    }
    Ok(e)
}

pub fn eval(expr: &Expr, vars: &HashMap<String, f64>) -> Result<f64, String> {
    Ok(match expr {
        Expr::Num(n) => *n,
        Expr::Var(v) => *vars.get(v).ok_or_else(|| format!("unknown variable {v}"))?,
        Expr::Neg(e) => -eval(e, vars)?,
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, vars)?, eval(b, vars)?);
            match op {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                '/' => a / b,
                '%' => a % b,
                '^' => a.powf(b),
                _ => unreachable!(),
            }
        }
        Expr::Call(name, args) => {
            let args: Vec<f64> = args
                .iter()
                .map(|a| eval(a, vars))
                .collect::<Result<_, _>>()?;
            match (name.as_str(), args.as_slice()) {
                ("min", [first, rest @ ..]) => rest.iter().fold(*first, |m, x| m.min(*x)),
                ("max", [first, rest @ ..]) => rest.iter().fold(*first, |m, x| m.max(*x)),
                ("abs", [x]) => x.abs(),
                ("sqrt", [x]) => x.sqrt(),
                ("sum", xs) => xs.iter().sum(),
                _ => return Err(format!("unknown function {name}/{}", args.len())),
            }
        }
    })
}

/// Generates a random expression of about `size` nodes over variables `x`, `y`, `z`.
pub fn random_expr(rng: &mut crate::data::Rng, size: usize) -> String {
    if size <= 1 {
        return match rng.below(4) {
            0 => "x".into(),
            1 => "y".into(),
            2 => "z".into(),
            _ => format!("{}", 1 + rng.below(99)),
        };
    }
    let left = size / 2;
    match rng.below(6) {
        0 => format!(
            "({} + {})",
            random_expr(rng, left),
            random_expr(rng, size - left)
        ),
        1 => format!(
            "{} * {}",
            random_expr(rng, left),
            random_expr(rng, size - left)
        ),
        2 => format!(
            "({} - {})",
            random_expr(rng, left),
            random_expr(rng, size - left)
        ),
        3 => format!(
            "max({}, {}, 1)",
            random_expr(rng, left),
            random_expr(rng, size - left)
        ),
        4 => format!("-{}", random_expr(rng, size - 1)),
        _ => format!("abs({} / 2)", random_expr(rng, size - 1)),
    }
}

pub type Ini = BTreeMap<String, BTreeMap<String, String>>;

/// INI: `[section]`, `key = value`, `;`/`#` comments; keys before any section go in `""`.
pub fn parse_ini(src: &str) -> Result<Ini, String> {
    let mut out: Ini = BTreeMap::new();
    let mut section = String::new();
    for (n, raw) in src.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("line {}: unclosed section", n + 1))?;
            section = name.trim().to_string();
            out.entry(section.clone()).or_default();
        } else if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"');
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_string(), v.to_string());
        } else {
            return Err(format!(
                "line {}: expected `key = value`, got {line:?}",
                n + 1
            ));
        }
    }
    Ok(out)
}

pub fn write_ini(ini: &Ini) -> String {
    let mut out = String::new();
    for (section, keys) in ini {
        if !section.is_empty() {
            out.push_str(&format!("[{section}]\n"));
        }
        for (k, v) in keys {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out.push('\n');
    }
    out
}

/// One CSV record with RFC 4180 quoting.
pub fn parse_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// `a=1&b=two%20words&c` -> {a: ["1"], b: ["two words"], c: [""]}.
pub fn parse_query(query: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_default()
            .push(percent_decode(v));
    }
    out
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
