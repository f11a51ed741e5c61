/*
 * fuzz_kp_keeper.c: the keeper protocol decoder on the side of what the
 * keeper parses from the network side (KP_SIGN, KP_AUDIT, KP_RELOAD): the
 * only way a compromised network process can reach the process holding the
 * CA key. The check itself is in fuzzkp.h.
 */
#include "fuzzkp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_kp_one(data, size, KP_TO_KEEPER);
}
