//! Optimal assignment on a rectangular cost matrix with forbidden pairs: the solver behind
//! batched matching.

use super::AssignmentError;

/// Assigns rows to columns (each at most once) to maximise the number of assigned rows and,
/// among assignments that do, minimise the total cost. Returns each row's column, or `None`.
///
/// `costs` is row-major, `rows × cols`; `None` forbids a pair (a driver out of radius, of
/// another product, ...). Why this objective rather than plain minimum cost: with forbidden
/// pairs allowed, the cheapest "assignment" is to assign nothing, so the number of riders
/// served has to come first; among those, the least total cost.
///
/// Method: the Hungarian algorithm with potentials (Kuhn–Munkres in the
/// Jonker–Volgenant-style shortest-augmenting-path form), O(k² · l) for
/// `k = min(rows, cols)` and `l = max(rows, cols)`; the smaller side is always the one
/// augmented. Forbidden pairs get a finite cost larger than any `k` allowed costs together,
/// which makes every extra allowed pair worth more than any cost saving, and those pairs are
/// reported as `None`. Costs are scaled to `[0, 1]` first, so that cost is finite for any
/// valid input. Deterministic: the same matrix always gives the same answer.
///
/// # Errors
/// [`AssignmentError::Shape`] if `costs` does not have `rows × cols` entries,
/// [`AssignmentError::Cost`] for an allowed cost that is NaN, infinite or negative.
pub fn optimal_assignment(
    rows: usize,
    cols: usize,
    costs: &[Option<f64>],
) -> Result<Vec<Option<usize>>, AssignmentError> {
    if rows.checked_mul(cols) != Some(costs.len()) {
        return Err(AssignmentError::Shape {
            rows,
            cols,
            len: costs.len(),
        });
    }
    let mut max = 0.0f64;
    for (i, cost) in costs.iter().enumerate() {
        if let Some(value) = *cost {
            if !(value.is_finite() && value >= 0.0) {
                return Err(AssignmentError::Cost {
                    row: i / cols,
                    col: i % cols,
                    value,
                });
            }
            max = max.max(value);
        }
    }
    if rows == 0 || cols == 0 {
        return Ok(vec![None; rows]);
    }
    let scale = if max > 0.0 { max } else { 1.0 };
    let k = rows.min(cols) as f64;
    // Each allowed cost is <= 1 after scaling, so k of them sum to <= k < forbidden.
    let forbidden = k + 1.0;
    let cost = |row: usize, col: usize| costs[row * cols + col].map_or(forbidden, |c| c / scale);
    let allowed = |row: usize, col: usize| costs[row * cols + col].is_some();
    if rows <= cols {
        let col_of_row = hungarian(rows, cols, cost);
        Ok(col_of_row
            .into_iter()
            .enumerate()
            .map(|(row, col)| allowed(row, col).then_some(col))
            .collect())
    } else {
        let row_of_col = hungarian(cols, rows, |c, r| cost(r, c));
        let mut col_of_row = vec![None; rows];
        for (col, row) in row_of_col.into_iter().enumerate() {
            if allowed(row, col) {
                col_of_row[row] = Some(col);
            }
        }
        Ok(col_of_row)
    }
}

/// Minimum-cost assignment of every one of `n` rows to distinct columns among `m >= n`, for
/// finite costs. Returns each row's column.
///
/// Rows are added one at a time; each addition runs a Dijkstra-like search over reduced costs
/// `cost - u[row] - v[col]` (kept non-negative by the potentials) for the cheapest
/// augmenting path to a free column, then flips the path. Indices are 1-based inside, with
/// column 0 as the search root.
fn hungarian(n: usize, m: usize, cost: impl Fn(usize, usize) -> f64) -> Vec<usize> {
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    // row_of[j]: the row holding column j (0 = free); way[j]: previous column on the path.
    let mut row_of = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    let mut min_reduced = vec![f64::INFINITY; m + 1];
    let mut used = vec![false; m + 1];
    for row in 1..=n {
        row_of[0] = row;
        let mut j0 = 0;
        min_reduced.fill(f64::INFINITY);
        used.fill(false);
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let reduced = cost(i0 - 1, j - 1) - u[i0] - v[j];
                if reduced < min_reduced[j] {
                    min_reduced[j] = reduced;
                    way[j] = j0;
                }
                if min_reduced[j] < delta {
                    delta = min_reduced[j];
                    j1 = j;
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_reduced[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        // Flip the path back to the root.
        while j0 != 0 {
            let prev = way[j0];
            row_of[j0] = row_of[prev];
            j0 = prev;
        }
    }
    let mut col_of_row = vec![0; n];
    for (j, &row) in row_of.iter().enumerate().skip(1) {
        if row != 0 {
            col_of_row[row - 1] = j - 1;
        }
    }
    col_of_row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_classic() {
        let c = |v: f64| Some(v);
        let costs = [
            c(4.0),
            c(1.0),
            c(3.0),
            c(2.0),
            c(0.0),
            c(5.0),
            c(3.0),
            c(2.0),
            c(2.0),
        ];
        assert_eq!(
            optimal_assignment(3, 3, &costs),
            Ok(vec![Some(1), Some(0), Some(2)])
        );
    }

    #[test]
    fn forbidden_pairs_and_cardinality_first() {
        // Row 0 could take column 0 cheaply, but then row 1 (which only allows column 0)
        // would go unserved: serving both wins even at a much higher total.
        let costs = [Some(1.0), Some(100.0), Some(2.0), None];
        assert_eq!(optimal_assignment(2, 2, &costs), Ok(vec![Some(1), Some(0)]));
        // A row with no allowed column is unassigned.
        let costs = [None, None, Some(3.0), Some(1.0)];
        assert_eq!(optimal_assignment(2, 2, &costs), Ok(vec![None, Some(1)]));
    }

    #[test]
    fn rectangular_both_ways() {
        // 3 rows, 1 column: the cheapest row gets it.
        let costs = [Some(5.0), Some(2.0), Some(7.0)];
        assert_eq!(
            optimal_assignment(3, 1, &costs),
            Ok(vec![None, Some(0), None])
        );
        // 1 row, 3 columns.
        assert_eq!(optimal_assignment(1, 3, &costs), Ok(vec![Some(1)]));
        assert_eq!(optimal_assignment(0, 3, &[]), Ok(vec![]));
        assert_eq!(optimal_assignment(2, 0, &[]), Ok(vec![None, None]));
    }

    #[test]
    fn bad_input_is_reported() {
        assert_eq!(
            optimal_assignment(2, 2, &[Some(1.0)]),
            Err(AssignmentError::Shape {
                rows: 2,
                cols: 2,
                len: 1
            })
        );
        assert!(matches!(
            optimal_assignment(1, 2, &[Some(1.0), Some(-1.0)]),
            Err(AssignmentError::Cost { row: 0, col: 1, .. })
        ));
        assert!(matches!(
            optimal_assignment(1, 1, &[Some(f64::NAN)]),
            Err(AssignmentError::Cost { .. })
        ));
    }
}
