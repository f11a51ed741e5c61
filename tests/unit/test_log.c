/*
 * test_log.c: records are one valid JSON object per line whatever the
 * fields hold (attacker-chosen CSR subjects included), in text mode too.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <cjson/cJSON.h>

#include "log.h"
#include "testutil.h"

static void
emit_nasty(void)
{
	const char      *sans[] = { "a\"b", "c\\d", "\n\x01", "\xff\xfe", "é" };
	struct log_field f[] = {
		LF_S("cn", "worker\"1\n\t\x7f"),
		LF_V("sans", sans, 5),
		LF_I("n", -42),
		LF_B("ok", 1),
	};

	log_init(LOG_JSON, LOG_DEBUG);
	log_record(LOG_INFO, "audit", f, 4);
}

Test(log, json_records_parse)
{
	char  *out = tu_capture_stderr(emit_nasty);
	cJSON *j = cJSON_Parse(out), *v;

	cr_assert_not_null(j, "not JSON: %s", out);
	cr_assert_str_eq(cJSON_GetObjectItem(j, "msg")->valuestring, "audit");
	cr_assert_str_eq(cJSON_GetObjectItem(j, "level")->valuestring, "info");
	cr_assert_str_eq(cJSON_GetObjectItem(j, "cn")->valuestring, "worker\"1\n\t\x7f");
	v = cJSON_GetObjectItem(j, "sans");
	cr_assert_eq(cJSON_GetArraySize(v), 5);
	cr_assert_str_eq(cJSON_GetArrayItem(v, 3)->valuestring, "\xef\xbf\xbd\xef\xbf\xbd");
	cr_assert_str_eq(cJSON_GetArrayItem(v, 4)->valuestring, "é");
	cr_assert_eq(cJSON_GetObjectItem(j, "n")->valueint, -42);
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
	cr_assert_eq(out[strlen(out) - 1], '\n');
	cr_assert_null(
	    strchr(out, '\n') == out + strlen(out) - 1 ? NULL : out, "more than one line");
	cJSON_Delete(j);
}

static void
emit_levels(void)
{
	log_init(LOG_TEXT, LOG_WARN);
	log_info("hidden");
	log_warnx("shown %d", 7);
}

Test(log, levels_and_text_format)
{
	char *out = tu_capture_stderr(emit_levels);

	cr_assert_null(strstr(out, "hidden"));
	cr_assert(strstr(out, "level=warn msg=\"shown 7\"") != NULL, "%s", out);
}

static void
emit_huge(void)
{
	static char      big[20000];
	struct log_field f[] = { LF_S("x", big) };

	memset(big, 'a', sizeof(big) - 1);
	log_init(LOG_JSON, LOG_INFO);
	log_record(LOG_INFO, "big", f, 1);
}

Test(log, oversized_records_stay_valid)
{
	char  *out = tu_capture_stderr(emit_huge);
	cJSON *j = cJSON_Parse(out);

	cr_assert_not_null(j, "truncated record is not JSON");
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "truncated")));
	cJSON_Delete(j);
}
