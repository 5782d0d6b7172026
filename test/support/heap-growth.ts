/** How much memory a constructor keeps: the bytes the V8 heap and array buffers grew by across it. */

/** The growth of heap plus array buffers while `make` ran, measured with what it made still held. */
export async function retainedGrowth<T>(make: () => T | Promise<T>): Promise<{ bytes: number; made: T }> {
  const before = process.memoryUsage();
  const made = await make();
  const after = process.memoryUsage();
  return { bytes: after.heapUsed - before.heapUsed + (after.arrayBuffers - before.arrayBuffers), made };
}

/**
 * A bound for "allocated nothing per possible entry": an lru-cache given `max` 1,000,000 allocates
 * about 28 MB up front (two arrays of 1e6 slots on the heap, three typed arrays beside it), so 4 MB
 * separates the two with room for the garbage of the construction itself.
 */
export const NO_PREALLOCATION_BYTES = 4 * 1024 * 1024;
