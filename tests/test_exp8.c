/* test_exp8.c: exp8 (model/exp8.h) against the C library's double exp, its range ends, and
 * lane independence (a value gets the same bits in any lane, whatever its neighbours). */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "exp8.h"

static float lane(float8 v, int k) {
    float out[8];
    memcpy(out, &v, sizeof out);
    return out[k];
}

/* |got - exact| in units of the last place of the float nearest exact. */
static double ulps(float got, double exact) {
    const float nearest = (float)exact;
    const double unit = (double)nextafterf(fabsf(nearest), INFINITY) - (double)fabsf(nearest);
    return fabs((double)got - exact) / unit;
}

Test(exp8, within_two_ulps_over_its_range) {
    double worst = 0.0, worst_x = 0.0;
    for (double x = -86.6; x <= 88.72; x += 0.000731) { /* about 240,000 values, not on a grid of ln2 */
        const float xf = (float)x;
        const float got = lane(exp8(float8_splat(xf)), 3);
        const double e = ulps(got, exp((double)xf));
        if (e > worst) worst = e, worst_x = xf;
    }
    cr_assert_leq(worst, 2.0, "exp8(%.9g) is %.2f ulps from exp", worst_x, worst);
}

Test(exp8, small_arguments_and_exact_points) {
    cr_assert_eq(lane(exp8(float8_splat(0.0f)), 0), 1.0f, "e^0 must be exactly 1");
    const float tiny[] = {1e-30f, -1e-30f, 1e-8f, -1e-8f, 1e-4f, -1e-4f, 0.5f, -0.5f, 1.0f, -1.0f};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++) {
        const float got = lane(exp8(float8_splat(tiny[i])), 5);
        cr_assert_leq(ulps(got, exp((double)tiny[i])), 2.0, "exp8(%g) = %.9g", tiny[i], got);
    }
}

Test(exp8, range_ends_nan_and_infinities) {
    cr_assert_eq(lane(exp8(float8_splat(-87.0f)), 0), 0.0f, "below -86.6: 0");
    cr_assert_eq(lane(exp8(float8_splat(-INFINITY)), 1), 0.0f, "e^-inf: 0");
    cr_assert(isinf(lane(exp8(float8_splat(89.0f)), 2)), "above 88.72: +inf");
    cr_assert(isinf(lane(exp8(float8_splat(INFINITY)), 3)), "e^inf: +inf");
    cr_assert(isnan(lane(exp8(float8_splat(NAN)), 4)), "NaN stays NaN");
    const float near_top = lane(exp8(float8_splat(88.7f)), 0);
    cr_assert(isfinite(near_top) && ulps(near_top, exp((double)88.7f)) <= 2.0, "exp8(88.7) = %g", near_top);
    const float near_bottom = lane(exp8(float8_splat(-86.5f)), 0);
    cr_assert(near_bottom > 0.0f && ulps(near_bottom, exp(-86.5)) <= 2.0, "exp8(-86.5) = %g", near_bottom);
}

Test(exp8, a_value_gets_the_same_bits_in_every_lane) {
    const float8 mixed = {NAN, -100.0f, 3.25f, 100.0f, -0.125f, 0.0f, 42.0f, -INFINITY};
    const float8 out = exp8(mixed);
    for (int k = 0; k < 8; k++) {
        float alone_in[8];
        memcpy(alone_in, &mixed, sizeof alone_in);
        const float8 alone = exp8(float8_splat(alone_in[k]));
        const float a = lane(out, k), b = lane(alone, 0);
        cr_assert(memcmp(&a, &b, sizeof a) == 0, "lane %d: %g beside others, %g alone", k, a, b);
    }
}
