import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';

/** @type {import('@sveltejs/kit').Config} */
const config = {
	preprocess: vitePreprocess(),
	kit: {
		// A single-page app: every page renders in the browser; unknown paths get index.html from
		// the host (hakiri serve, the Worker's static assets), which then routes on the client.
		adapter: adapter({ fallback: 'index.html', pages: 'build', assets: 'build', strict: true }),
		// Served at `/` on both hosts, so the fallback page's absolute asset paths resolve from any
		// deep link (docs/adr/0026-operator-console.md).
		paths: { base: '' },
		// Text from connectors and operators is shown as text only; the policy forbids anything
		// but this origin, so even a rendering mistake cannot load or post elsewhere. Hash mode
		// lets SvelteKit's own bootstrap script through by its hash.
		csp: {
			mode: 'hash',
			directives: {
				'default-src': ['self'],
				'script-src': ['self'],
				// SvelteKit's route announcer (for screen readers) carries a style attribute; its
				// hash allows exactly that one (`style-src-attr` needs 'unsafe-hashes' for it).
				// Another kit version may change it: the browser test fails naming the new hash.
				'style-src': ['self'],
				'style-src-attr': [
					'unsafe-hashes',
					'sha256-S8qMpvofolR8Mpjy4kQvEm7m1q8clzU4dfDH0AmvZjo='
				],
				'img-src': ['self', 'data:'],
				'connect-src': ['self'],
				'object-src': ['none'],
				'base-uri': ['none'],
				'form-action': ['self']
			}
		},
		// A tab open across a deploy finds out and reloads instead of importing removed chunks.
		version: { pollInterval: 60_000 }
	}
};

export default config;
