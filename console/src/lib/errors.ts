// What a page says when a request fails: an `ApiError`'s message is already `describeError`'s text.

/** The text of a caught `e` for an error banner. */
export function errorText(e: unknown): string {
	return e instanceof Error ? e.message : String(e);
}
