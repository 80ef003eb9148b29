package georoute

import (
	"math"
	"math/rand/v2"
	"testing"
)

// haversineTextbookKm is the haversine formula as textbooks give it, written
// independently of haversine.go so that the unit-vector shortcut is checked
// against the definition.
func haversineTextbookKm(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	φ1, φ2 := lat1*rad, lat2*rad
	dφ, dλ := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dφ/2)*math.Sin(dφ/2) + math.Cos(φ1)*math.Cos(φ2)*math.Sin(dλ/2)*math.Sin(dλ/2)
	return 2 * 6371 * math.Atan2(math.Sqrt(a), math.Sqrt(1-a))
}

func TestDistanceKm(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		// approx is the published figure, checked to within 0.5 %.
		approx float64
	}{
		{"London to New York is about 5570 km", 51.5074, -0.1278, 40.7128, -74.0060, 5570},
		{"antipodes on the equator are half the circumference", 0, 0, 0, 180, math.Pi * 6371},
		{"antipodes off the equator are half the circumference", 45, 10, -45, -170, math.Pi * 6371},
		{"pole to pole is half the circumference", 90, 0, -90, 0, math.Pi * 6371},
		{"the same point is 0 km away", 48.8566, 2.3522, 48.8566, 2.3522, 0},
		{"the north pole is one point whatever the longitude", 90, 0, 90, 123, 0},
		{"crossing the antimeridian takes the short way", 0, 179.5, 0, -179.5, 111.2},
		{"Sydney to Tokyo is about 7800 km", -33.8688, 151.2093, 35.6762, 139.6503, 7800},
		{"Paris to London is about 344 km", 48.8566, 2.3522, 51.5074, -0.1278, 344},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := distanceKm(pointAt(tc.lat1, tc.lon1), pointAt(tc.lat2, tc.lon2))
			want := haversineTextbookKm(tc.lat1, tc.lon1, tc.lat2, tc.lon2)
			if math.Abs(got-want) > 1e-6*math.Max(1, want) {
				t.Errorf("distanceKm = %.9f km, textbook haversine %.9f km", got, want)
			}
			if math.Abs(got-tc.approx) > 0.005*math.Max(1, tc.approx) {
				t.Errorf("distanceKm = %.3f km, expected about %.0f km", got, tc.approx)
			}
			if back := distanceKm(pointAt(tc.lat2, tc.lon2), pointAt(tc.lat1, tc.lon1)); back != got {
				t.Errorf("distance is not symmetric: %v there, %v back", got, back)
			}
		})
	}
}

func TestPointAt(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		lat, lon := r.Float64()*180-90, r.Float64()*360-180
		p := pointAt(lat, lon)
		if n := p.closeness(p); math.Abs(n-1) > 1e-12 {
			t.Fatalf("pointAt(%v, %v) has length² %v, want a unit vector", lat, lon, n)
		}
		// Back from the vector to the angles.
		gotLat := math.Asin(p.z) * 180 / math.Pi
		gotLon := math.Atan2(p.y, p.x) * 180 / math.Pi
		if math.Abs(gotLat-lat) > 1e-9 || math.Abs(gotLon-lon) > 1e-9 {
			t.Fatalf("pointAt(%v, %v) points at %v, %v", lat, lon, gotLat, gotLon)
		}
	}
}

func TestClosenessOrdersAsDistance(t *testing.T) {
	t.Run("random triples order by closeness exactly as by haversine distance", func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 11))
		randomPlace := func() (float64, float64) { return r.Float64()*180 - 90, r.Float64()*360 - 180 }
		checked := 0
		for range 20000 {
			cLat, cLon := randomPlace()
			aLat, aLon := randomPlace()
			bLat, bLon := randomPlace()
			dA := haversineTextbookKm(cLat, cLon, aLat, aLon)
			dB := haversineTextbookKm(cLat, cLon, bLat, bLon)
			if math.Abs(dA-dB) < 1e-3 {
				continue // too close to call in floating point
			}
			c := pointAt(cLat, cLon)
			nearerByCloseness := c.closeness(pointAt(aLat, aLon)) > c.closeness(pointAt(bLat, bLon))
			if nearerByCloseness != (dA < dB) {
				t.Fatalf("client %v,%v: a %v,%v at %.3f km, b %v,%v at %.3f km, but closeness says a nearer = %v",
					cLat, cLon, aLat, aLon, dA, bLat, bLon, dB, nearerByCloseness)
			}
			checked++
		}
		if checked < 19000 {
			t.Fatalf("only %d triples were far enough apart to check", checked)
		}
	})
	t.Run("sites a metre apart are still told apart", func(t *testing.T) {
		c := pointAt(51.5, -0.12)
		// About 1.1 m and 2.2 m north of the client.
		one, two := pointAt(51.50001, -0.12), pointAt(51.50002, -0.12)
		if !(c.closeness(one) > c.closeness(two)) {
			t.Fatalf("closeness %v (1 m) not above %v (2 m)", c.closeness(one), c.closeness(two))
		}
		if d := distanceKm(c, one); math.Abs(d-haversineTextbookKm(51.5, -0.12, 51.50001, -0.12)) > 1e-9 {
			t.Fatalf("distanceKm for 1 m = %v km", d)
		}
	})
	t.Run("distance grows with falling closeness along a meridian", func(t *testing.T) {
		c := pointAt(0, 0)
		prevNear, prevKm := 2.0, -1.0
		for lat := 0.0; lat <= 180; lat += 0.5 {
			// Walk north over the pole and down the other side.
			p := pointAt(lat, 0)
			if lat > 90 {
				p = pointAt(180-lat, 180)
			}
			near, km := c.closeness(p), distanceKm(c, p)
			if near > prevNear || km < prevKm {
				t.Fatalf("at %v° of arc: closeness %v after %v, distance %v after %v", lat, near, prevNear, km, prevKm)
			}
			prevNear, prevKm = near, km
		}
	})
}
