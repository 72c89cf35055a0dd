//! The `quadratic` tool: a numerically stable solver for `a·x² + b·x + c = 0`.

wit_bindgen::generate!({ path: "wit", world: "quadratic", generate_all });

use exports::witbox::quadratic::solver::{Guest, Root, SolveError};

struct Quadratic;

impl Guest for Quadratic {
    fn solve(a: f64, b: f64, c: f64) -> Result<Vec<Root>, SolveError> {
        solve(a, b, c)
    }
}

export!(Quadratic);

fn solve(a: f64, b: f64, c: f64) -> Result<Vec<Root>, SolveError> {
    if !(a.is_finite() && b.is_finite() && c.is_finite()) {
        return Err(SolveError::NotFinite);
    }
    let largest = a.abs().max(b.abs()).max(c.abs());
    if largest == 0.0 {
        return Err(SolveError::EveryNumber);
    }
    // Dividing every coefficient by the power of two nearest the largest one keeps
    // the roots, is exact, and keeps b² from overflowing.
    let scale = 2f64.powi(largest.log2().floor() as i32);
    let (a, b, c) = (a / scale, b / scale, c / scale);

    let mut roots = if a == 0.0 {
        if b == 0.0 {
            return Err(SolveError::NoSolution);
        }
        vec![real(-c / b)]
    } else {
        let disc = b * b - 4.0 * a * c;
        if disc == 0.0 {
            vec![real(-b / (2.0 * a))]
        } else if disc > 0.0 {
            // q has the sign of -b, so b and sign(b)·√Δ never cancel.
            let sign = if b < 0.0 { -1.0 } else { 1.0 };
            let q = -(b + sign * disc.sqrt()) / 2.0;
            vec![real(q / a), real(c / q)]
        } else {
            let re = -b / (2.0 * a);
            let im = (-disc).sqrt() / (2.0 * a.abs());
            vec![root(re, -im), root(re, im)]
        }
    };
    if roots.iter().any(|r| !(r.re.is_finite() && r.im.is_finite())) {
        return Err(SolveError::NotFinite);
    }
    roots.sort_by(|x, y| x.re.total_cmp(&y.re).then(x.im.total_cmp(&y.im)));
    roots.dedup_by(|x, y| x.re == y.re && x.im == y.im);
    Ok(roots)
}

fn real(re: f64) -> Root {
    root(re, 0.0)
}

/// Adding 0.0 turns -0.0 into 0.0, so `-0` never reaches the caller.
fn root(re: f64, im: f64) -> Root {
    Root { re: re + 0.0, im: im + 0.0 }
}
