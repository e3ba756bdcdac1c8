// Package browsertest drives the andon board in a real headless Chromium
// (through chromedp): the page loads, a firing rule shows red, a change in
// the evaluator reaches the page without a reload, and pulling the cord
// from the page stops a jidoka Line. It holds tests only, so that package
// andon and its tests do not link chromedp; it uses andon's exported API
// alone. The test skips when chromium is not installed (Debian package
// chromium), unless TAIKIT_REQUIRE_SERVERS=1.
package browsertest
