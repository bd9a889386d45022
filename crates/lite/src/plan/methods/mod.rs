//! The method registry, without libtorch: each method's parameters (one file each: a serde struct,
//! its official defaults with their source, its checks and what the README says of it) and the one
//! list, [`for_each_method!`], from which the suite schema (`plan::Method`), validation, `repro
//! loss`, `repro methods` (the README's method table) and the training side's dispatch
//! (`crate::methods`) are generated. Adding a method = its parameter file here, its loss file, its
//! method file and one line in that list.

pub mod amdim;
pub mod barlow_twins;
pub mod byol;
pub mod corinfomax;
pub mod dino;
pub mod emi;
pub mod er;
pub mod mae;
pub mod mmae;
pub mod simclr;
pub mod umae;
pub mod vicreg;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::{Backbone, Problems};

/// Every method: `yaml_name Variant Params`, where `Params` lives in `plan::methods::yaml_name` and
/// the method that trains it in `crate::methods::yaml_name`. `$then!` receives the whole list.
#[macro_export]
macro_rules! for_each_method {
    ($then:ident) => {
        $then! {
            corinfomax CorInfoMax CorInfoMaxParams,
            simclr Simclr SimclrParams,
            barlow_twins BarlowTwins BarlowTwinsParams,
            vicreg Vicreg VicregParams,
            byol Byol ByolParams,
            emi Emi EmiParams,
            amdim Amdim AmdimParams,
            er Er ErParams,
            dino Dino DinoParams,
            mae Mae MaeParams,
            umae Umae UmaeParams,
            mmae Mmae MmaeParams,
        }
    };
}

/// What the README's method table says of a method.
pub struct About {
    pub paper: &'static str,
    pub code: &'static str,
    /// The `method_params` fields as the README lists them (with the notable defaults).
    pub fields: &'static str,
    pub notes: &'static str,
}

/// A method's parameters: the suite's `method_params` for it, typed.
pub trait Params: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned + Default {
    /// The `method:` word of a suite.
    const NAME: &'static str;
    const ABOUT: About;
    /// Checks what serde cannot (ranges, sizes), each problem at its key.
    fn check(&self, c: &mut Check);
    /// Why this backbone cannot train this method (None: it can).
    fn refuses(&self, _backbone: &Backbone) -> Option<String> {
        None
    }
}

/// Checks one target's `method_params`, each problem recorded at its key path.
pub struct Check<'a> {
    at: &'a str,
    p: &'a mut Problems,
}

impl Check<'_> {
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.at)
    }
    pub fn push(&mut self, key: &str, msg: impl std::fmt::Display) {
        let path = self.key(key);
        self.p.push(&path, msg);
    }
    pub fn positive(&mut self, key: &str, v: f64) {
        let path = self.key(key);
        self.p.positive(v, &path);
    }
    pub fn non_negative(&mut self, key: &str, v: f64) {
        let path = self.key(key);
        self.p.non_negative(v, &path);
    }
    pub fn unit(&mut self, key: &str, v: f64) {
        let path = self.key(key);
        self.p.unit(v, &path);
    }
    pub fn sizes(&mut self, key: &str, v: &[i64]) {
        if v.is_empty() || v.iter().any(|&d| d < 1) {
            self.push(key, format!("expected a non-empty list of positive sizes, found {v:?}"));
        }
    }
    /// A predictor whose output must match the projector's.
    pub fn same_last(&mut self, key: &str, projector: &[i64], predictor: &[i64]) {
        if projector.last() != predictor.last() {
            self.push(key, format!("the last size must equal the projector's ({:?}), found {:?}", projector.last(), predictor.last()));
        }
    }
}

/// `params` as `P` and checked, or the problem at its key path.
fn parse_checked<P: Params>(params: Value, at: &str, p: &mut Problems) -> Option<P> {
    let params = super::typed::<P>(params, at, p)?;
    params.check(&mut Check { at, p });
    Some(params)
}

/// One row of the README's method table.
pub struct Row {
    pub name: &'static str,
    pub about: About,
}

macro_rules! define_method {
    ($($name:ident $variant:ident $params:ident,)*) => {
        $(pub use self::$name::$params;)*
        pub use self::er::{ErHead, ErReduction};
        pub use self::mae::DecoderParams;

        /// The SSL method and its hyper-parameters. The YAML `method:` word names the variant.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "name", rename_all = "snake_case")]
        pub enum Method {
            $($variant($params),)*
            /// The backbone with its random initial weights: the floor trained numbers are read against.
            RandomInit,
        }

        impl Method {
            pub fn name(&self) -> &'static str {
                match self {
                    $(Method::$variant(_) => <$params as Params>::NAME,)*
                    Method::RandomInit => "random_init",
                }
            }

            /// Why `backbone` cannot train this method (None: it can).
            pub fn refuses(&self, backbone: &Backbone) -> Option<String> {
                match self {
                    $(Method::$variant(p) => p.refuses(backbone),)*
                    Method::RandomInit => None,
                }
            }

            /// The method `name` with `params` (the suite's `method_params` at key path `at`),
            /// every problem recorded in `p`.
            pub(super) fn parse(name: &str, params: Option<&Value>, at: &str, p: &mut Problems) -> Option<Method> {
                let params = params.cloned().unwrap_or(Value::Mapping(Default::default()));
                match name {
                    $(n if n == <$params as Params>::NAME => parse_checked::<$params>(params, at, p).map(Method::$variant),)*
                    "random_init" => {
                        if params.as_mapping().is_some_and(|m| !m.is_empty()) {
                            p.push(at, "random_init takes no parameters; remove method_params");
                        }
                        Some(Method::RandomInit)
                    }
                    "" => None,
                    other => {
                        p.push(&at.replace("method_params", "method"), format!("unknown method {other:?}; expected one of: {}", names().join(", ")));
                        None
                    }
                }
            }
        }

        /// The method names a suite may use, in the registry's order.
        pub fn names() -> Vec<&'static str> {
            vec![$(<$params as Params>::NAME,)* "random_init"]
        }

        /// The README's method table, one row per trained method in the registry's order.
        pub fn rows() -> Vec<Row> {
            vec![$(Row { name: <$params as Params>::NAME, about: <$params as Params>::ABOUT },)*]
        }
    };
}

for_each_method!(define_method);

impl Method {
    /// Whether this method trains at all (the random floor does not).
    pub fn trains(&self) -> bool {
        !matches!(self, Method::RandomInit)
    }
}

/// The README's method table as Markdown (`repro methods`; a test keeps the README equal to it).
pub fn markdown_table() -> String {
    let mut s = String::from("| method | paper | reference code | `method_params` | notes and known deviations |\n|---|---|---|---|---|\n");
    for r in rows() {
        s.push_str(&format!("| `{}` | {} | {} | {} | {} |\n", r.name, r.about.paper, r.about.code, r.about.fields, r.about.notes));
    }
    s.push_str("| `random_init` | – | – | – | the backbone with its random initial weights: the floor |\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method's defaults pass its own checks and survive a YAML round trip.
    #[test]
    fn defaults_are_valid_and_round_trip() {
        macro_rules! each {
            ($($name:ident $variant:ident $params:ident,)*) => {$(
                let d = $params::default();
                let mut p = Problems::default();
                d.check(&mut Check { at: "m", p: &mut p });
                assert!(p.0.is_empty(), "{}: {:?}", $params::NAME, p.0);
                let back: $params = serde_yaml::from_value(serde_yaml::to_value(&d).unwrap()).unwrap();
                assert_eq!(back, d);
                assert_eq!(stringify!($name), $params::NAME);
            )*};
        }
        for_each_method!(each);
    }

    /// The README's method table is this registry's (`repro methods` prints it).
    #[test]
    fn readme_lists_the_registry() {
        let readme = include_str!("../../../../../README.md");
        let table = markdown_table();
        assert!(readme.contains(&table), "README.md's method table differs from `repro methods`:\n{table}");
    }

    #[test]
    fn unknown_names_list_every_method() {
        let mut p = Problems::default();
        assert!(Method::parse("simclrr", None, "t.method_params", &mut p).is_none());
        assert_eq!(p.0.len(), 1);
        assert!(p.0[0].starts_with("t.method: unknown method \"simclrr\""), "{:?}", p.0);
        for n in names() {
            assert!(p.0[0].contains(n), "{:?}", p.0);
        }
    }
}
