// Debian's Chromium, headless, as the browser tests drive it (playwright-core cannot
// download a browser here; `npm test` installs Debian's package).

export const CHROMIUM = "/usr/bin/chromium";
export const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"];
