//! A strict reader of the Prometheus text exposition format (0.0.4), enough to check what the
//! server exposes: every sample belongs to a declared family, label values are quoted and
//! escaped, histogram buckets are cumulative and end in `+Inf` equal to `_count`.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses and checks the whole text; the error names the offending line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut exposition = Exposition::default();
        for (number, line) in text.lines().enumerate() {
            let fail = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                match words.next() {
                    Some("TYPE") => {
                        let name = words.next().ok_or_else(|| fail("TYPE without a name"))?;
                        let kind = words.next().ok_or_else(|| fail("TYPE without a type"))?;
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                            return Err(fail("unknown type"));
                        }
                        if exposition.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                            return Err(fail("family declared twice"));
                        }
                    }
                    Some("HELP") | Some("EOF") => {}
                    _ => {}
                }
                continue;
            }
            let sample = parse_sample(line).map_err(|why| fail(&why))?;
            if exposition.family_of(&sample.name).is_none() {
                return Err(fail("sample of an undeclared family"));
            }
            exposition.samples.push(sample);
        }
        exposition.check_histograms()?;
        Ok(exposition)
    }

    /// The declared family a sample name belongs to (`x_bucket` belongs to histogram `x`).
    pub fn family_of(&self, sample: &str) -> Option<&str> {
        if self.types.contains_key(sample) {
            return self.types.get_key_value(sample).map(|(k, _)| k.as_str());
        }
        for suffix in ["_total", "_bucket", "_sum", "_count", "_created"] {
            if let Some(base) = sample.strip_suffix(suffix) {
                if let Some((k, _)) = self.types.get_key_value(base) {
                    return Some(k.as_str());
                }
            }
        }
        None
    }

    /// The value of the sample with this name whose labels include `labels`; 0 when absent,
    /// which is what Prometheus assumes of a counter not yet created.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }

    fn check_histograms(&self) -> Result<(), String> {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            // Group buckets by their labels other than `le`.
            let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for s in self.samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
                let mut labels = s.labels.clone();
                let le = labels.remove("le").ok_or_else(|| format!("{family}: bucket without le"))?;
                let bound =
                    if le == "+Inf" { f64::INFINITY } else { le.parse().map_err(|_| format!("{family}: le {le}"))? };
                series.entry(labels).or_default().push((bound, s.value));
            }
            for (labels, buckets) in series {
                let monotonic = buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
                if !monotonic || buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
                    return Err(format!("{family} {labels:?}: buckets not cumulative or no +Inf"));
                }
                let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let count = self.value(&format!("{family}_count"), &pairs);
                if buckets.last().map(|b| b.1) != Some(count) {
                    return Err(format!("{family} {labels:?}: +Inf bucket differs from _count"));
                }
            }
        }
        Ok(())
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    let valid_name = name
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()));
    if name.is_empty() || !valid_name {
        return Err("invalid metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut at = inner;
        loop {
            if let Some(after) = at.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = at.find('=').ok_or("label without =")?;
            let key = at[..eq].to_owned();
            let quoted = at[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
            let (value, after) = unescape(quoted)?;
            labels.insert(key, value);
            at = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let value_text = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("value {v:?} is not a number"))?,
    };
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// A label value up to its closing quote, and the text after that quote.
fn unescape(quoted: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in quoted.char_indices() {
        match (escaped, c) {
            (true, 'n') => value.push('\n'),
            (true, c) => value.push(c),
            (false, '\\') => {}
            (false, '"') => return Ok((value, &quoted[i + 1..])),
            (false, c) => value.push(c),
        }
        escaped = !escaped && c == '\\';
    }
    Err("unterminated label value".into())
}
