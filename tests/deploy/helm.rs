//! Renders a Helm chart the way `helm template` does, for the subset the
//! chart uses: Go's text/template (the `gtmpl-ng` engine), `.Values` (the
//! chart's values.yaml deep-merged with an override file), `.Release`,
//! `.Chart`, and these Sprig/Helm functions: include, required, fail,
//! default, int, quote, toYaml, indent, nindent, trunc, trimSuffix, contains,
//! replace, sha256sum. A template that uses anything else fails to parse
//! here, so the chart cannot drift outside what this test understands.
//!
//! Where this renderer is stricter than Helm: a value missing from
//! values.yaml renders `<no value>` (Helm prints an empty string), and the
//! caller rejects any output that contains it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gtmpl_ng::{Context, Func, FuncError, Template, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

/// The release every render uses (`helm template continuity-agent CHART -n continuity-agent`).
pub const RELEASE: &str = "continuity-agent";
pub const NAMESPACE: &str = "continuity-agent";

pub struct Chart {
    dir: PathBuf,
    meta: Json,
    defaults: Json,
    /// The `_*.tpl` files: named templates only.
    helpers: String,
    /// Every other file of templates/, by file name.
    templates: BTreeMap<String, String>,
}

/// One render: each template's output, by file name.
pub type Rendered = BTreeMap<String, String>;

thread_local! {
    /// The chart's named templates, for `include` (a template function
    /// cannot reach the template set that calls it).
    static HELPERS: RefCell<String> = const { RefCell::new(String::new()) };
}

impl Chart {
    pub fn load(dir: &Path) -> Chart {
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let meta = super::yaml_docs("Chart.yaml", &read(dir.join("Chart.yaml"))).remove(0);
        let defaults = super::yaml_docs("values.yaml", &read(dir.join("values.yaml"))).remove(0);
        let mut helpers = String::new();
        let mut templates = BTreeMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir.join("templates"))
            .expect("templates/")
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with('_') {
                helpers.push_str(&read(path));
            } else {
                templates.insert(name, read(path));
            }
        }
        Chart {
            dir: dir.to_path_buf(),
            meta,
            defaults,
            helpers,
            templates,
        }
    }

    /// The chart's default values merged with `overrides` (a values file).
    pub fn values(&self, overrides: Option<&str>) -> Json {
        let mut values = self.defaults.clone();
        if let Some(rel) = overrides {
            let text = std::fs::read_to_string(self.dir.join(rel)).expect("values file");
            merge(&mut values, super::yaml_docs(rel, &text).remove(0));
        }
        values
    }

    /// Renders every template with `values`; the first template error (a
    /// `fail`, a `required`, a bad function) is the error.
    pub fn render(&self, values: Json) -> Result<Rendered, String> {
        HELPERS.with(|h| *h.borrow_mut() = self.helpers.clone());
        let mut out = Rendered::new();
        for (name, text) in &self.templates {
            let cx = self.context(values.clone(), name);
            let mut t = template();
            t.add_template("_helpers.tpl", self.helpers.clone())
                .map_err(|e| format!("_helpers.tpl: {e}"))?;
            t.parse(text.clone()).map_err(|e| format!("{name}: {e}"))?;
            let text = t
                .render(&Context::from(cx))
                .map_err(|e| format!("{name}: {e}"))?;
            out.insert(name.clone(), text);
        }
        Ok(out)
    }

    fn context(&self, values: Json, file: &str) -> Value {
        // Chart.yaml keys as Helm exposes them: .Chart.Name, .Chart.AppVersion.
        let chart: serde_json::Map<String, Json> = self
            .meta
            .as_object()
            .expect("Chart.yaml is a map")
            .iter()
            .map(|(k, v)| (capitalized(k), v.clone()))
            .collect();
        to_value(&serde_json::json!({
            "Values": values,
            "Chart": chart,
            "Release": {
                "Name": RELEASE, "Namespace": NAMESPACE, "Service": "Helm",
                "IsInstall": true, "IsUpgrade": false, "Revision": 1,
            },
            "Template": {
                "Name": format!("continuity-agent/templates/{file}"),
                "BasePath": "continuity-agent/templates",
            },
        }))
    }
}

fn capitalized(key: &str) -> String {
    let mut c = key.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Helm's values merge: maps merge key by key, anything else is replaced.
fn merge(base: &mut Json, over: Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn template() -> Template {
    let mut t = Template::default();
    t.add_funcs(FUNCS);
    t
}

const FUNCS: &[(&str, Func)] = &[
    ("include", include),
    ("required", required),
    ("fail", fail),
    ("default", default),
    ("int", int),
    ("quote", quote),
    ("toYaml", to_yaml),
    ("indent", indent),
    ("nindent", nindent),
    ("trunc", trunc),
    ("trimSuffix", trim_suffix),
    ("contains", contains),
    ("replace", replace),
    ("sha256sum", sha256sum),
];

fn err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FuncError::ExactlyXArgs(name.into(), n))
    }
}

/// A value as Go's `%v` prints it (`<nil>` aside: Sprig treats nil as "").
fn text(v: &Value) -> String {
    match v {
        Value::Nil | Value::NoValue => String::new(),
        other => other.to_string(),
    }
}

/// Sprig's `empty`: nil, false, 0, "" and empty collections.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Nil | Value::NoValue => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Function(_) => false,
    }
}

fn as_int(v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .ok_or_else(|| err(format!("int: {n:?} is not a number"))),
        Value::String(s) => s.trim().parse().map_err(|_| err(format!("int: {s:?}"))),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Nil | Value::NoValue => Ok(0),
        other => Err(err(format!("int: cannot convert {other}"))),
    }
}

fn include(args: &[Value]) -> Result<Value, FuncError> {
    arity("include", args, 2)?;
    let name = text(&args[0]);
    let mut t = template();
    let helpers = HELPERS.with(|h| h.borrow().clone());
    t.add_template("_helpers.tpl", helpers)
        .map_err(|e| err(format!("include {name:?}: {e}")))?;
    t.parse(format!("{{{{ template {name:?} . }}}}"))
        .map_err(|e| err(format!("include {name:?}: {e}")))?;
    t.render(&Context::from(args[1].clone()))
        .map(Value::String)
        .map_err(|e| err(format!("include {name:?}: {e}")))
}

fn required(args: &[Value]) -> Result<Value, FuncError> {
    arity("required", args, 2)?;
    match &args[1] {
        Value::Nil | Value::NoValue => Err(err(text(&args[0]))),
        Value::String(s) if s.is_empty() => Err(err(text(&args[0]))),
        v => Ok(v.clone()),
    }
}

fn fail(args: &[Value]) -> Result<Value, FuncError> {
    arity("fail", args, 1)?;
    Err(err(text(&args[0])))
}

fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [fallback] => Ok(fallback.clone()),
        [fallback, given] if is_empty(given) => Ok(fallback.clone()),
        [_, given] => Ok(given.clone()),
        _ => Err(FuncError::AtLeastXArgs("default".into(), 1)),
    }
}

fn int(args: &[Value]) -> Result<Value, FuncError> {
    arity("int", args, 1)?;
    Ok(Value::from(as_int(&args[0])?))
}

/// Go's `%q` for the strings a chart quotes.
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::Nil | Value::NoValue))
        .map(|v| {
            let mut q = String::from('"');
            for c in text(v).chars() {
                match c {
                    '"' => q.push_str("\\\""),
                    '\\' => q.push_str("\\\\"),
                    '\n' => q.push_str("\\n"),
                    '\t' => q.push_str("\\t"),
                    c => q.push(c),
                }
            }
            q.push('"');
            q
        })
        .collect();
    Ok(Value::String(quoted.join(" ")))
}

fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    arity("toYaml", args, 1)?;
    let yaml = serde_yaml_ng::to_string(&to_json(&args[0])?).map_err(|e| err(e.to_string()))?;
    // Helm trims the trailing newline.
    Ok(Value::String(yaml.trim_end_matches('\n').to_string()))
}

fn indent_by(n: &Value, s: &Value) -> Result<String, FuncError> {
    let pad = " ".repeat(usize::try_from(as_int(n)?).map_err(|_| err("indent: negative"))?);
    Ok(format!(
        "{pad}{}",
        text(s).replace('\n', &format!("\n{pad}"))
    ))
}

fn indent(args: &[Value]) -> Result<Value, FuncError> {
    arity("indent", args, 2)?;
    Ok(Value::String(indent_by(&args[0], &args[1])?))
}

fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    arity("nindent", args, 2)?;
    Ok(Value::String(format!(
        "\n{}",
        indent_by(&args[0], &args[1])?
    )))
}

fn trunc(args: &[Value]) -> Result<Value, FuncError> {
    arity("trunc", args, 2)?;
    let n = usize::try_from(as_int(&args[0])?).map_err(|_| err("trunc: negative length"))?;
    Ok(Value::String(text(&args[1]).chars().take(n).collect()))
}

fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    arity("trimSuffix", args, 2)?;
    let (suffix, s) = (text(&args[0]), text(&args[1]));
    Ok(Value::String(
        s.strip_suffix(&suffix).unwrap_or(&s).to_string(),
    ))
}

fn contains(args: &[Value]) -> Result<Value, FuncError> {
    arity("contains", args, 2)?;
    Ok(Value::Bool(text(&args[1]).contains(&text(&args[0]))))
}

fn replace(args: &[Value]) -> Result<Value, FuncError> {
    arity("replace", args, 3)?;
    Ok(Value::String(
        text(&args[2]).replace(&text(&args[0]), &text(&args[1])),
    ))
}

fn sha256sum(args: &[Value]) -> Result<Value, FuncError> {
    arity("sha256sum", args, 1)?;
    Ok(Value::String(hex::encode(Sha256::digest(
        text(&args[0]).as_bytes(),
    ))))
}

fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

fn to_json(v: &Value) -> Result<Json, FuncError> {
    Ok(match v {
        Value::Nil | Value::NoValue => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Json::from(i),
            (_, Some(u), _) => Json::from(u),
            (_, _, Some(f)) => Json::from(f),
            _ => return Err(err("toYaml: unrepresentable number")),
        },
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Map(m) | Value::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<_, FuncError>>()?,
        ),
        Value::Function(_) => return Err(err("toYaml: a function has no YAML form")),
    })
}

#[test]
fn renderer_follows_sprig_semantics_the_chart_relies_on() {
    let render = |src: &str, data: Json| -> Result<String, String> {
        let mut t = template();
        t.parse(src).map_err(|e| e.to_string())?;
        t.render(&Context::from(to_value(&data)))
            .map_err(|e| e.to_string())
    };
    let ok = |src: &str, data: Json| render(src, data).unwrap();
    assert_eq!(
        ok(r#"{{ .a | default "x" }}"#, serde_json::json!({"a": ""})),
        "x"
    );
    assert_eq!(
        ok(r#"{{ .a | default "x" }}"#, serde_json::json!({"a": "y"})),
        "y"
    );
    assert_eq!(
        ok(r#"{{ "abcdef-" | trunc 7 | trimSuffix "-" }}"#, Json::Null),
        "abcdef"
    );
    assert_eq!(
        ok(r#"{{ .n | quote }}"#, serde_json::json!({"n": "a\"b"})),
        r#""a\"b""#
    );
    assert_eq!(
        ok(r#"{{ gt (int .n) 1 }}"#, serde_json::json!({"n": 3.0})),
        "true"
    );
    assert_eq!(
        ok(
            "x:{{ .m | toYaml | nindent 2 }}",
            serde_json::json!({"m": {"b": 1, "a": [true]}})
        ),
        "x:\n  a:\n  - true\n  b: 1"
    );
    let e = render(
        r#"{{ required "need it" .missing }}"#,
        serde_json::json!({}),
    )
    .unwrap_err();
    assert!(e.contains("need it"), "{e}");
    let e = render(r#"{{ fail "no way" }}"#, Json::Null).unwrap_err();
    assert!(e.contains("no way"), "{e}");
    // Anything outside the supported subset is refused, not rendered wrongly.
    let e = render(r#"{{ "a" | upper }}"#, Json::Null).unwrap_err();
    assert!(e.contains("function upper not defined"), "{e}");
}
