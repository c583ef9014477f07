"""The console's words in English and Chinese.

One table: a key, its English and its Chinese. :func:`labels` picks a language; a key
missing in one language falls back to English, and a test checks that none is missing.
"""

from __future__ import annotations

from collections.abc import Mapping

from inspection.standards.schema import LANGUAGES, check_language

_TABLE: dict[str, tuple[str, str]] = {
    "title": ("Inspection console", "检测控制台"),
    "live": ("Live", "实时"),
    "review": ("Review queue", "复核队列"),
    "ask": ("Ask", "提问"),
    "audit": ("Audit", "批量审核"),
    "standards": ("Standards", "缺陷标准"),
    "models": ("Models", "模型"),
    "statistics": ("Statistics", "统计"),
    "signed_in_as": ("Signed in as", "当前用户"),
    "logout": ("Log out", "退出登录"),
    "latest_parts": ("Latest parts", "最新零件"),
    "kpis": ("Line this shift", "本班产线指标"),
    "refresh": ("Refresh", "刷新"),
    "auto_refresh": ("Refresh by itself", "自动刷新"),
    "part": ("Part", "零件"),
    "open_part": ("Open", "打开"),
    "image": ("Image and defects", "图像与缺陷"),
    "verdict": ("Verdict", "判定"),
    "measurements": ("Measurements", "测量结果"),
    "report": ("Report", "报告"),
    "history": ("Reviews and questions", "复核与提问记录"),
    "queue": ("Waiting for review", "待复核"),
    "your_decision": ("Your decision", "复核判定"),
    "decision": ("Decision", "复核结论"),
    "reason": ("Reason (required to override)", "理由（改判时必填）"),
    "defect_class": ("Defect class (optional)", "缺陷类别（可选）"),
    "mask": ("Draw the defect (optional)", "标出缺陷区域（可选）"),
    "confirm": ("Confirm machine verdict", "确认机器判定"),
    "submit_review": ("Save decision", "保存复核结论"),
    "question": ("Question", "问题"),
    "spoken": ("Or speak it", "或语音提问"),
    "ask_button": ("Ask", "提问"),
    "answer": ("Answer", "回答"),
    "audit_files": ("Images or a .zip", "图像或 .zip 压缩包"),
    "product": ("Product", "产品"),
    "run_audit": ("Run audit", "运行审核"),
    "record_parts": (
        "Record the parts for review (a station of their own)",
        "记录零件以供复核 (单独的工位)",
    ),
    "audit_report": ("Audit report", "审核报告"),
    "standard": ("Standard", "标准"),
    "version": ("Version", "版本"),
    "compare_with": ("Compare with version", "与版本对比"),
    "diff": ("Differences", "差异"),
    "standard_text": ("Standard (YAML)", "标准（YAML）"),
    "note": ("Note", "备注"),
    "check": ("Check", "校验"),
    "save_version": ("Save as new version", "保存为新版本"),
    "upload_standard": ("Upload a standard", "上传标准"),
    "activate": ("Activate for product", "为产品启用"),
    "active_settings": ("Per product", "各产品设置"),
    "adapter": ("LoRA adapter", "LoRA 适配器"),
    "switch_adapter": ("Switch adapter", "切换适配器"),
    "model_card": ("Model card", "模型卡"),
    "days": ("Days", "天数"),
    "export_records": ("Export records (CSV)", "导出记录 (CSV)"),
    "records_file": ("Records of the window", "时间窗内的记录"),
    "pareto": ("Defect Pareto", "缺陷帕累托图"),
    "yield_trend": ("Yield trend", "良率趋势"),
    "false_rejects": ("False rejects by shift", "各班次误判率"),
    "activity": ("Changes", "变更记录"),
    "saved": ("Saved", "已保存"),
    "no_part": ("Choose a part", "请选择零件"),
    "col_captured": ("captured", "采集时间"),
    "col_station": ("station", "工位"),
    "col_part": ("part", "零件"),
    "col_product": ("product", "产品"),
    "col_verdict": ("verdict", "判定"),
    "col_defects": ("defects", "缺陷"),
    "col_clauses": ("clauses", "条款"),
    "col_class": ("class", "类别"),
    "col_zone": ("zone", "区域"),
    "col_size": ("size", "尺寸"),
    "col_clause": ("clause", "条款"),
    "col_severity": ("severity", "严重度"),
    "col_action": ("action", "处置"),
    "col_reason": ("reason", "原因"),
}

VERDICTS: dict[str, tuple[str, str]] = {
    "PASS": ("PASS", "合格"),
    "REJECT": ("REJECT", "不合格"),
    "REVIEW": ("REVIEW", "待复核"),
    "NOT_INSPECTED": ("NOT INSPECTED", "未检测"),
}


def labels(language: str = "en") -> Mapping[str, str]:
    """Every label in ``language`` (``en`` or ``zh``)."""
    check_language(language)
    index = LANGUAGES.index(language)
    return {key: words[index] or words[0] for key, words in _TABLE.items()}


def verdict_label(verdict: str | None, language: str = "en") -> str:
    """A verdict as the operator reads it (``None``: not inspected)."""
    words = VERDICTS.get(verdict or "NOT_INSPECTED", (str(verdict), str(verdict)))
    return words[LANGUAGES.index(language)]
