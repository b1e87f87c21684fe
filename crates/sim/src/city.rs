//! Geometry and demand of the city: a flat local projection around the centre, and the random
//! draws of places (waypoints, pickups, dropoffs) and products.
//!
//! Everything inside the simulator works in metres east/north of the centre ([`Point`]);
//! latitude and longitude only appear when an event is written. At city scale (≤ 100 km) the
//! equirectangular projection is accurate to well under a metre per kilometre, so a straight
//! line here is a plausible road-agnostic path and distances are plain Euclidean ones.

use std::f64::consts::{PI, TAU};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use surgeflow_schema::Product;

use crate::config::CityConfig;

/// Mean Earth radius (IUGG), the sphere the rest of surgeflow measures great-circle distances on.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Length of one degree of latitude (and of longitude at the equator) on that sphere.
pub(crate) const METRES_PER_DEGREE: f64 = EARTH_RADIUS_M * PI / 180.0;

/// Shortest trip a rider asks for: nobody hails a car to cross the street.
const MIN_TRIP_M: f64 = 200.0;

/// A position in metres east (`x`) and north (`y`) of the city centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub(crate) x: f64,
    pub(crate) y: f64,
}

impl Point {
    pub(crate) fn distance(self, other: Point) -> f64 {
        (self.x - other.x).hypot(self.y - other.y)
    }

    pub(crate) fn distance_sq(self, other: Point) -> f64 {
        let (dx, dy) = (self.x - other.x, self.y - other.y);
        dx * dx + dy * dy
    }

    /// Distance from the city centre.
    pub(crate) fn norm(self) -> f64 {
        self.x.hypot(self.y)
    }

    fn offset(self, dx: f64, dy: f64) -> Point {
        Point {
            x: self.x + dx,
            y: self.y + dy,
        }
    }
}

/// Equirectangular projection centred on the city: exact at the centre, and the scale error
/// grows with the square of the distance from it, negligible at city scale.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plane {
    lat0: f64,
    lon0: f64,
    metres_per_degree_lon: f64,
}

impl Plane {
    pub(crate) fn new(lat0: f64, lon0: f64) -> Plane {
        Plane {
            lat0,
            lon0,
            metres_per_degree_lon: METRES_PER_DEGREE * lat0.to_radians().cos(),
        }
    }

    pub(crate) fn to_point(self, lat: f64, lon: f64) -> Point {
        Point {
            x: (lon - self.lon0) * self.metres_per_degree_lon,
            y: (lat - self.lat0) * METRES_PER_DEGREE,
        }
    }

    pub(crate) fn to_lat_lon(self, p: Point) -> (f64, f64) {
        (
            self.lat0 + p.y / METRES_PER_DEGREE,
            self.lon0 + p.x / self.metres_per_degree_lon,
        )
    }
}

/// Discrete distribution over indices, by cumulative weights, so a draw is one uniform number
/// and a binary search.
#[derive(Debug, Clone)]
struct Weighted {
    cumulative: Vec<f64>,
    /// Index of the last positive weight: the answer if rounding lands a draw on the total.
    last_positive: usize,
}

impl Weighted {
    /// `None` when no weight is positive, as there is then nothing to draw.
    fn new(weights: impl IntoIterator<Item = f64>) -> Option<Weighted> {
        let mut cumulative = Vec::new();
        let mut total = 0.0;
        let mut last_positive = None;
        for (i, w) in weights.into_iter().enumerate() {
            total += w;
            cumulative.push(total);
            if w > 0.0 {
                last_positive = Some(i);
            }
        }
        last_positive.map(|last_positive| Weighted {
            cumulative,
            last_positive,
        })
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative[self.last_positive];
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.last_positive)
    }
}

/// A hotspot projected onto the plane.
#[derive(Debug, Clone, Copy)]
struct HotspotDisc {
    centre: Point,
    radius_m: f64,
}

/// The spatial and product distributions of a validated [`CityConfig`].
#[derive(Debug, Clone)]
pub(crate) struct City {
    pub(crate) plane: Plane,
    radius_m: f64,
    products: Weighted,
    hotspots: Vec<HotspotDisc>,
    /// `None` when no hotspot has weight: every pickup is then uniform.
    hotspot_weights: Option<Weighted>,
    hotspot_share: f64,
    mean_trip_m: f64,
}

impl City {
    /// `None` if the config's product weights are all zero, which validation rules out.
    pub(crate) fn new(config: &CityConfig) -> Option<City> {
        let plane = Plane::new(config.center_lat, config.center_lon);
        Some(City {
            plane,
            radius_m: config.radius_m,
            products: Weighted::new(config.product_weights)?,
            hotspots: config
                .hotspots
                .iter()
                .map(|h| HotspotDisc {
                    centre: plane.to_point(h.lat, h.lon),
                    radius_m: h.radius_m,
                })
                .collect(),
            hotspot_weights: Weighted::new(config.hotspots.iter().map(|h| h.weight)),
            hotspot_share: config.hotspot_share,
            mean_trip_m: config.mean_trip_m,
        })
    }

    /// A product drawn from the configured mix.
    pub(crate) fn product(&self, rng: &mut ChaCha8Rng) -> Product {
        Product::ALL[self.products.sample(rng)]
    }

    /// A point uniform over the city disc: where idle drivers cruise to and where they start.
    pub(crate) fn random_point(&self, rng: &mut ChaCha8Rng) -> Point {
        uniform_in_disc(rng, Point { x: 0.0, y: 0.0 }, self.radius_m)
    }

    /// A pickup: in a hotspot with probability `hotspot_share`, otherwise uniform.
    pub(crate) fn pickup(&self, rng: &mut ChaCha8Rng) -> Point {
        match &self.hotspot_weights {
            Some(weights) if rng.random_bool(self.hotspot_share) => {
                let h = self.hotspots[weights.sample(rng)];
                self.clamp(uniform_in_disc(rng, h.centre, h.radius_m))
            }
            _ => self.random_point(rng),
        }
    }

    /// A dropoff at an exponentially distributed distance (at least [`MIN_TRIP_M`]) in a
    /// uniform direction from the pickup. A direction leaving the city is redrawn a few times;
    /// if they all leave it, the trip heads for the centre instead (and beyond it, at most to
    /// the far edge). Clamping the point to the edge would instead turn long trips from near
    /// the edge into a few metres along it.
    pub(crate) fn dropoff(&self, rng: &mut ChaCha8Rng, pickup: Point) -> Point {
        let length = exponential(rng, self.mean_trip_m).max(MIN_TRIP_M);
        for _ in 0..4 {
            let angle = rng.random::<f64>() * TAU;
            let candidate = pickup.offset(length * angle.cos(), length * angle.sin());
            if candidate.norm() <= self.radius_m {
                return candidate;
            }
        }
        let norm = pickup.norm();
        let length = length.min(norm + self.radius_m);
        if norm == 0.0 {
            return Point {
                x: 0.0,
                y: length.min(self.radius_m),
            };
        }
        self.clamp(Point {
            x: pickup.x * (1.0 - length / norm),
            y: pickup.y * (1.0 - length / norm),
        })
    }

    /// `p`, or the nearest point of the city disc when it lies outside.
    fn clamp(&self, p: Point) -> Point {
        let norm = p.norm();
        if norm <= self.radius_m {
            p
        } else {
            let scale = self.radius_m / norm;
            Point {
                x: p.x * scale,
                y: p.y * scale,
            }
        }
    }
}

/// A point uniform over the disc of `radius` around `centre` (the square root makes the
/// density uniform in area rather than in radius).
pub(crate) fn uniform_in_disc(rng: &mut ChaCha8Rng, centre: Point, radius: f64) -> Point {
    let r = radius * rng.random::<f64>().sqrt();
    let angle = rng.random::<f64>() * TAU;
    centre.offset(r * angle.cos(), r * angle.sin())
}

/// An exponentially distributed number of the given mean (inverse transform sampling; `1 - u`
/// lies in `(0, 1]`, so the logarithm is finite).
pub(crate) fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn projection_round_trips_and_has_the_right_scale() {
        let plane = Plane::new(40.7580, -73.9855);
        let p = plane.to_point(40.7680, -73.9755);
        let (lat, lon) = plane.to_lat_lon(p);
        assert!((lat - 40.7680).abs() < 1e-12 && (lon + 73.9755).abs() < 1e-12);
        // 0.01° of latitude is about 1112 m; 0.01° of longitude at 40.76° N about 842 m.
        assert!((p.y - 1111.95).abs() < 1.0, "{p:?}");
        assert!((p.x - 842.3).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn weighted_draws_follow_the_weights_and_skip_zero_weights() {
        let w = Weighted::new([0.0, 3.0, 0.0, 1.0]).expect("positive weights");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[w.sample(&mut rng)] += 1;
        }
        assert_eq!((counts[0], counts[2]), (0, 0));
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{counts:?}");
        assert!(Weighted::new([0.0, 0.0]).is_none());
    }

    #[test]
    fn pickups_and_dropoffs_stay_in_the_city() {
        let config = CityConfig::default();
        let city = City::new(&config).expect("default config is valid");
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut total_trip = 0.0;
        for _ in 0..10_000 {
            let pickup = city.pickup(&mut rng);
            let dropoff = city.dropoff(&mut rng, pickup);
            assert!(pickup.norm() <= config.radius_m + 1e-6);
            assert!(dropoff.norm() <= config.radius_m + 1e-6);
            assert!(pickup.distance(dropoff) >= MIN_TRIP_M - 1e-6);
            total_trip += pickup.distance(dropoff);
        }
        let mean = total_trip / 10_000.0;
        assert!((2_000.0..3_000.0).contains(&mean), "mean trip {mean} m");
    }
}
