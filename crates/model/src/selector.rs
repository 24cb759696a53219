//! Label selectors (`app=web,tier!=db,env in (a,b),!legacy,owner`) and the field
//! selectors berth supports (`metadata.name`, `metadata.namespace`).

use std::collections::BTreeMap;

use crate::ObjectMeta;

/// A parsed label selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|requirement| match requirement {
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            Requirement::NotEquals(key, value) => labels.get(key) != Some(value),
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => !labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::NotExists(key) => !labels.contains_key(key),
        })
    }
}

/// A label selector as Kubernetes objects carry one (`matchLabels` and
/// `matchExpressions`, all of which must hold).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorSpec {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectorRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelectorSpec {
    /// Problems with the selector, as `field: message`.
    pub fn validate(&self, field: &str) -> Vec<crate::FieldError> {
        let mut errors = Vec::new();
        for (idx, requirement) in self.match_expressions.iter().enumerate() {
            let at = format!("{field}.matchExpressions[{idx}]");
            match requirement.operator.as_str() {
                "In" | "NotIn" if requirement.values.is_empty() => {
                    errors.push(crate::FieldError::new(format!("{at}.values"), "In and NotIn need at least one value"))
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => errors.push(crate::FieldError::new(
                    format!("{at}.operator"),
                    format!("{other:?} is not an operator: use In, NotIn, Exists or DoesNotExist"),
                )),
            }
        }
        errors
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| match r.operator.as_str() {
                "In" => labels.get(&r.key).is_some_and(|v| r.values.contains(v)),
                "NotIn" => !labels.get(&r.key).is_some_and(|v| r.values.contains(v)),
                "Exists" => labels.contains_key(&r.key),
                "DoesNotExist" => !labels.contains_key(&r.key),
                _ => false,
            })
    }
}

/// A parsed field selector: `metadata.name` and `metadata.namespace`, with `=`, `==` and `!=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(FieldName, bool, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldName {
    Name,
    Namespace,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((field, value)) = part.split_once("!=") {
                (field, false, value)
            } else if let Some((field, value)) = part.split_once("==") {
                (field, true, value)
            } else if let Some((field, value)) = part.split_once('=') {
                (field, true, value)
            } else {
                return Err(format!("field selector term {part:?} needs '=', '==' or '!='"));
            };
            let field = match field.trim() {
                "metadata.name" => FieldName::Name,
                "metadata.namespace" => FieldName::Namespace,
                other => {
                    return Err(format!("field selector {other:?} is not supported: use metadata.name or metadata.namespace"));
                }
            };
            terms.push((field, equal, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    /// The single name this selector pins, which lets a list read one row.
    pub fn exact_name(&self) -> Option<&str> {
        self.terms.iter().find(|(f, eq, _)| *f == FieldName::Name && *eq).map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, meta: &ObjectMeta) -> bool {
        self.terms.iter().all(|(field, equal, value)| {
            let actual = match field {
                FieldName::Name => &meta.name,
                FieldName::Namespace => &meta.namespace,
            };
            (actual == value) == *equal
        })
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (idx, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..idx]);
                start = idx + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(check_key(key.trim())?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(check_key(key.trim())?, value.trim().to_string()));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(check_key(key.trim())?, value.trim().to_string()));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim();
        let (negated, list) = if let Some(list) = rest.strip_prefix("notin") {
            (true, list)
        } else if let Some(list) = rest.strip_prefix("in") {
            (false, list)
        } else {
            return Err(format!("label selector term {part:?}: expected 'in' or 'notin'"));
        };
        let list = list.trim();
        let Some(inner) = list.strip_prefix('(').and_then(|l| l.strip_suffix(')')) else {
            return Err(format!("label selector term {part:?}: values must be in parentheses"));
        };
        let values = inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
        let key = check_key(words[0])?;
        return Ok(if negated { Requirement::NotIn(key, values) } else { Requirement::In(key, values) });
    }
    Ok(Requirement::Exists(check_key(part)?))
}

fn check_key(key: &str) -> Result<String, String> {
    let valid =
        !key.is_empty() && key.len() <= 317 && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if valid { Ok(key.to_string()) } else { Err(format!("{key:?} is not a valid label key")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_selector_spec_needs_every_label_and_expression() {
        let requirement = |key: &str, operator: &str, values: &[&str]| SelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        let spec = LabelSelectorSpec {
            match_labels: labels(&[("vendor", "redhat")]),
            match_expressions: vec![requirement("os", "In", &["rhel8", "rhel9"]), requirement("legacy", "DoesNotExist", &[])],
        };
        assert!(spec.matches(&labels(&[("vendor", "redhat"), ("os", "rhel9")])));
        assert!(!spec.matches(&labels(&[("vendor", "redhat"), ("os", "rhel7")])));
        assert!(!spec.matches(&labels(&[("vendor", "redhat"), ("os", "rhel9"), ("legacy", "")])));
        assert!(!spec.matches(&labels(&[("os", "rhel9")])));
        let not_in = LabelSelectorSpec { match_expressions: vec![requirement("os", "NotIn", &["rhel7"])], ..Default::default() };
        assert!(not_in.matches(&labels(&[])) && !not_in.matches(&labels(&[("os", "rhel7")])));
        let bad = LabelSelectorSpec {
            match_expressions: vec![requirement("os", "In", &[]), requirement("os", "Has", &[])],
            ..Default::default()
        };
        let errors = bad.validate("spec.selector");
        assert_eq!(errors[0].field, "spec.selector.matchExpressions[0].values");
        assert_eq!(errors[1].field, "spec.selector.matchExpressions[1].operator");
    }

    #[test]
    fn label_selector_requirements() {
        let web = labels(&[("app", "web"), ("env", "prod")]);
        let check = |selector: &str, want: bool| {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(parsed.matches(&web), want, "{selector}");
        };
        check("", true);
        check("app=web", true);
        check("app==web,env=prod", true);
        check("app!=web", false);
        check("env in (prod, staging)", true);
        check("env notin (prod)", false);
        check("app,!legacy", true);
        check("legacy", false);
        check("env in (dev),app=web", false);
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        assert!(LabelSelector::parse("env in prod").unwrap_err().contains("parentheses"));
        assert!(LabelSelector::parse("a b c").unwrap_err().contains("'in' or 'notin'"));
        assert!(FieldSelector::parse("spec.x=1").unwrap_err().contains("not supported"));
    }

    #[test]
    fn field_selector_on_name() {
        let selector = FieldSelector::parse("metadata.name=ruby").unwrap();
        assert_eq!(selector.exact_name(), Some("ruby"));
        let meta = ObjectMeta { name: "ruby".into(), ..ObjectMeta::default() };
        assert!(selector.matches(&meta));
        assert!(!FieldSelector::parse("metadata.name!=ruby").unwrap().matches(&meta));
    }
}
