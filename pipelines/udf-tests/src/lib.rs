//! Test support for the Arroyo UDF libraries under `pipelines/udfs/` and the SQL pipelines
//! in `pipelines/*.sql`.
//!
//! Why a crate of its own: the UDFs are only worth anything if Arroyo can call them, so
//! the tests do what Arroyo's worker does. They load each built `cdylib` with
//! `libloading`, hand its exported `__run` a batch of Arrow arrays through the FFI types of
//! `arroyo-udf-common` (nulls included), and read the Arrow array it returns, then compare
//! it with `surgeflow-domain` on the same inputs. Calling the Rust functions directly would
//! skip the generated wrapper, the null handling and the ABI, where the surprises are.
//!
//! The UDF crates are dev-dependencies of this one, so `cargo test` builds their
//! libraries (every crate type, `cdylib` included) before the tests run; [`Udf::load`] finds
//! them next to the test executable. This crate also reads the UDF sources (`udf.rs`) to
//! learn which SQL functions exist, so the SQL checks follow the crates without a list to
//! keep in sync.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use arrow::array::{ArrayData, MutableArrayData};
use arrow::ffi::from_ffi;
use arroyo_udf_common::{FfiArrays, RunResult};

/// The signature of the `__run` symbol `#[udf]` exports.
type RunFn = unsafe extern "C-unwind" fn(FfiArrays) -> RunResult;

/// Why a UDF could not be loaded or called.
#[derive(Debug)]
pub enum UdfError {
    /// No built library was found; the paths that were tried.
    NotBuilt(Vec<PathBuf>),
    /// The library or its `__run` symbol could not be loaded.
    Load(libloading::Error),
    /// `__run` reported a failure (a panic inside the UDF).
    Failed,
    /// The returned array could not be imported.
    Import(arrow::error::ArrowError),
    /// A source or SQL file could not be read.
    Read(PathBuf, std::io::Error),
}

impl fmt::Display for UdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotBuilt(tried) => write!(
                f,
                "UDF library not built (tried {tried:?}); build the workspace first"
            ),
            Self::Load(e) => write!(f, "cannot load UDF library: {e}"),
            Self::Failed => f.write_str("__run returned an error (the UDF panicked)"),
            Self::Import(e) => write!(f, "cannot import the result array: {e}"),
            Self::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for UdfError {}

/// A loaded UDF library.
pub struct Udf {
    // Kept alive for as long as `run` may be called.
    library: libloading::Library,
}

impl Udf {
    /// Loads the library of the UDF crate in `pipelines/udfs/<name>/`
    /// (`surgeflow-udf-<name>`), searched for in the directory of the running executable and
    /// its parent (`target/<profile>/deps` and `target/<profile>`).
    ///
    /// # Errors
    /// [`UdfError::NotBuilt`] if no library file exists there, [`UdfError::Load`] if it does
    /// not load.
    pub fn load(name: &str) -> Result<Self, UdfError> {
        let file: OsString = format!(
            "{}surgeflow_udf_{}{}",
            std::env::consts::DLL_PREFIX,
            name.replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        )
        .into();
        let exe = std::env::current_exe().map_err(|e| UdfError::Read(PathBuf::new(), e))?;
        let tried: Vec<PathBuf> = exe
            .ancestors()
            .skip(1)
            .take(2)
            .map(|dir| dir.join(&file))
            .collect();
        let path = tried
            .iter()
            .find(|path| path.is_file())
            .ok_or_else(|| UdfError::NotBuilt(tried.clone()))?;
        // SAFETY: the library is one of this workspace's UDF crates; loading it runs no
        // initialisers beyond Rust's own.
        let library = unsafe { libloading::Library::new(path) }.map_err(UdfError::Load)?;
        let udf = Self { library };
        udf.run_fn()?;
        Ok(udf)
    }

    fn run_fn(&self) -> Result<libloading::Symbol<'_, RunFn>, UdfError> {
        // SAFETY: `#[udf]` exports `__run` with exactly this signature.
        unsafe { self.library.get::<RunFn>(b"__run\0") }.map_err(UdfError::Load)
    }

    /// Calls `__run` with one batch of argument columns (all of one length) and returns
    /// the result column, as Arroyo's worker does.
    ///
    /// The result is copied into memory of this process before it is returned: the array
    /// the library exports is released by code inside the library, so it must not outlive
    /// the [`Udf`] (Arroyo keeps its libraries loaded for good; a test need not).
    ///
    /// # Errors
    /// [`UdfError::Failed`] if the UDF panicked, [`UdfError::Import`] if its result is not a
    /// valid Arrow array.
    pub fn run(&self, args: Vec<ArrayData>) -> Result<ArrayData, UdfError> {
        let run = self.run_fn()?;
        // SAFETY: the arrays are handed over through the C data interface; the library frees
        // them (the FfiArrays contract).
        match unsafe { run(FfiArrays::from_vec(args)) } {
            // SAFETY: the result was exported by `FfiArraySchema::from_data`.
            RunResult::Ok(result) => {
                let exported =
                    unsafe { from_ffi(result.0, &result.1) }.map_err(UdfError::Import)?;
                let mut copy = MutableArrayData::new(vec![&exported], false, exported.len());
                copy.extend(0, 0, exported.len());
                Ok(copy.freeze())
            }
            RunResult::Err => Err(UdfError::Failed),
        }
    }
}

/// A SQL function one UDF crate exports: its name and parameter count, read from the
/// `#[udf]` function of `pipelines/udfs/<crate_dir>/udf.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdfSignature {
    /// The crate's directory under `pipelines/udfs/`.
    pub crate_dir: String,
    /// The SQL function name (the Rust function's).
    pub name: String,
    /// How many arguments it takes.
    pub arity: usize,
}

/// The `pipelines/` directory.
#[must_use]
pub fn pipelines_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Reads a file, naming it on failure.
///
/// # Errors
/// [`UdfError::Read`].
pub fn read(path: &Path) -> Result<String, UdfError> {
    fs::read_to_string(path).map_err(|e| UdfError::Read(path.to_path_buf(), e))
}

/// The functions the UDF crates export, one per crate, sorted by crate. A crate whose
/// `udf.rs` has no `#[udf] fn name(...)` is skipped (and the tests, which expect every
/// crate, then fail).
///
/// # Errors
/// [`UdfError::Read`] if the directory or a source cannot be read.
pub fn exported_udfs() -> Result<Vec<UdfSignature>, UdfError> {
    let dir = pipelines_dir().join("udfs");
    let entries = fs::read_dir(&dir).map_err(|e| UdfError::Read(dir.clone(), e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| UdfError::Read(dir.clone(), e))?;
        let source = entry.path().join("udf.rs");
        if !source.is_file() {
            continue;
        }
        if let Some((name, arity)) = udf_signature(&read(&source)?) {
            found.push(UdfSignature {
                crate_dir: entry.file_name().to_string_lossy().into_owned(),
                name,
                arity,
            });
        }
    }
    found.sort_by(|a, b| a.crate_dir.cmp(&b.crate_dir));
    Ok(found)
}

/// Name and parameter count of the function following `#[udf]` in a UDF source.
fn udf_signature(source: &str) -> Option<(String, usize)> {
    let after = &source[source.find("#[udf]")?..];
    let after = &after[after.find("fn ")? + 3..];
    let open = after.find('(')?;
    let close = after.find(')')?;
    let params = after.get(open + 1..close)?;
    let arity = params.split(',').filter(|p| !p.trim().is_empty()).count();
    Some((after[..open].trim().to_string(), arity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_udf_signature() {
        let source =
            "/*\n[dependencies]\n*/\nuse x;\n#[udf]\nfn f_1(a: f64, b: &str) -> Option<f64> {}";
        assert_eq!(udf_signature(source), Some(("f_1".to_string(), 2)));
        assert_eq!(udf_signature("fn g(a: f64) {}"), None);
    }
}
