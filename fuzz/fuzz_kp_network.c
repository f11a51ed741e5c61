/*
 * fuzz_kp_network.c: the keeper protocol decoder on the side of what the
 * network side parses from the keeper (KP_SIGNED, KP_CREDS, KP_WAITING).
 * The check itself is in fuzzkp.h.
 */
#include "fuzzkp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_kp_one(data, size, KP_TO_NETWORK);
}
