//! Which kernel set this CPU runs: detected once at run time, never chosen at compile time, so a
//! binary built on one machine runs (more slowly) on an older one.

use std::sync::OnceLock;

/// A kernel set, named for the instructions it needs. Ordered from the most portable to the
/// fastest: a set can run wherever every set after it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust: the reference twins, on any CPU.
    Reference,
    /// x86-64 AVX2 + FMA + F16C (Haswell, Zen 1 and later): 8-bit products with maddubs + madd.
    Avx2,
    /// AVX2 plus AVX-512 F, BW, VL and VNNI (Ice Lake, Zen 4 and later): 8-bit products with
    /// vpdpbusd, f32 dot products 16 lanes wide.
    Avx512Vnni,
}

/// Environment variable that caps the kernel set: `reference`, `avx2` or `avx512vnni`. Read once,
/// on the first kernel call; a set the CPU cannot run falls back to the best one it can.
pub const KERNELS_ENV: &str = "GPT_RS_KERNELS";

impl Isa {
    /// Every kernel set, most portable first.
    pub const ALL: [Isa; 3] = [Isa::Reference, Isa::Avx2, Isa::Avx512Vnni];

    /// The kernel set [`super::matmul`] and friends use: the best this CPU supports, capped by
    /// [`KERNELS_ENV`]. Detected on the first call and cached.
    pub fn detected() -> Isa {
        static CHOICE: OnceLock<Isa> = OnceLock::new();
        *CHOICE.get_or_init(|| {
            let best = Isa::best_supported();
            match std::env::var(KERNELS_ENV) {
                Ok(name) => match Isa::from_name(&name) {
                    Some(isa) => isa.min(best),
                    None => {
                        tracing::warn!("{KERNELS_ENV}={name:?} is not one of reference, avx2, avx512vnni; using {}", best.name());
                        best
                    }
                },
                Err(_) => best,
            }
        })
    }

    /// The fastest kernel set this CPU can run, ignoring [`KERNELS_ENV`]. Cached.
    pub fn best_supported() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(detect)
    }

    /// The kernel sets this CPU can run, most portable first: what tests compare.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
    }

    pub fn is_supported(self) -> bool {
        self <= Isa::best_supported()
    }

    /// `self` if the CPU can run it, else the best set it can: every dispatching function calls
    /// this first, which is what makes calling the `unsafe` SIMD kernels behind it sound.
    pub fn usable(self) -> Isa {
        self.min(Isa::best_supported())
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Reference => "reference",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(name.trim()))
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    let avx512 = avx2
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni");
    if avx512 {
        Isa::Avx512Vnni
    } else if avx2 {
        Isa::Avx2
    } else {
        Isa::Reference
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Reference
}
