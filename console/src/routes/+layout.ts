// A single-page app: nothing is rendered on a server or at build time; the host answers every
// page path with the fallback index.html.
export const ssr = false;
export const prerender = false;
