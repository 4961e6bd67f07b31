"""Op jobs around the loader that are not asset materialisations (dry runs)."""

import dagster as dg

from pipelines.lib.console import console_logger
from pipelines.lib.resources import CrmSettingsResource


class CheckMappingConfig(dg.Config):
    mapping_file: str
    sample: int = 20
    delivery_date: str | None = None


@dg.op(description="Dry run of a source mapping on real landing files; writes nothing.")
def check_mapping_op(
    context: dg.OpExecutionContext, config: CheckMappingConfig, crm: CrmSettingsResource
) -> str:
    from pipelines.ingest.deployment import check_customer_ref_system
    from pipelines.ingest.dry_run import check_mapping, format_check_report

    report = check_mapping(
        config.mapping_file,
        crm.settings.landing,
        sample=config.sample,
        delivery_date=config.delivery_date,
        business_timezone=crm.settings.timezone,
    )
    text = format_check_report(report)
    problem = check_customer_ref_system(config.mapping_file, crm.settings)
    if problem:
        text += f"\n\nERROR: {problem}"
    context.add_output_metadata({"report": dg.MetadataValue.md(f"```\n{text}\n```")})
    if problem:
        # the report and the problem, and `crm check-mapping` exits 1
        raise dg.Failure(description=text, allow_retries=False)
    return text


@dg.job(
    name="check_mapping",
    description="Dry run of a mapping (crm check-mapping).",
    logger_defs={"console": console_logger},
)
def check_mapping_job():
    check_mapping_op()
