import { describe, expect, it } from 'vitest';
import { ApiError } from './api';
import { errorText } from './errors';

describe('an error banner', () => {
	it('says an API error as describeError does, anything else as its text', () => {
		const error = new ApiError(409, {
			code: 'fenced',
			detail: { pipeline: 'shop', epoch: 4 }
		} as ConstructorParameters<typeof ApiError>[1]);
		expect(errorText(error)).toBe('the lease of shop (epoch 4) is no longer valid');
		expect(errorText(new TypeError('Failed to fetch'))).toBe('Failed to fetch');
		expect(errorText('offline')).toBe('offline');
	});
});
